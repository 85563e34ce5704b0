/** Weights of the mmssr student: one hidden ReLU layer, a scores head and a styles head. */
export interface MlpWeights {
  inputDims: number;
  hidden: number;
  /** [inputDims x hidden], row-major */
  w1: Float32Array;
  b1: Float32Array;
  /** [hidden x 14] */
  wScores: Float32Array;
  bScores: Float32Array;
  /** [hidden x 9] */
  wStyles: Float32Array;
  bStyles: Float32Array;
}
