/**
 * DuckDB is the independent Parquet reader of the tests: what our writers produce is read back
 * by it (and files it writes are read by ours), so a test never checks our code with itself.
 */

import { DuckDBInstance } from "@duckdb/node-api";

/** An in-memory DuckDB: `sql` runs one query on a fresh connection and returns its rows. */
export interface Duck {
  sql(query: string): Promise<Record<string, unknown>[]>;
  close(): void;
}

/** Open an in-memory DuckDB instance; close it when done (typically in afterAll). */
export async function openDuck(): Promise<Duck> {
  const instance = await DuckDBInstance.create(":memory:");
  return {
    async sql(query: string): Promise<Record<string, unknown>[]> {
      const con = await instance.connect();
      try {
        return (await con.runAndReadAll(query)).getRowObjectsJS() as Record<string, unknown>[];
      } finally {
        con.closeSync();
      }
    },
    close(): void {
      instance.closeSync();
    },
  };
}
