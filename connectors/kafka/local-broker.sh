#!/usr/bin/env bash
# A real single-node Kafka broker (KRaft: broker and controller in one JVM) without Docker.
#
#   connectors/kafka/local-broker.sh start    fetch the jars if needed, format storage once,
#                                             start the broker, wait until it answers, print
#                                             its bootstrap address (127.0.0.1:PORT) on stdout
#   connectors/kafka/local-broker.sh stop     SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s
#   connectors/kafka/local-broker.sh status   exit 0 and print the address when it answers
#   connectors/kafka/local-broker.sh logs     print the path of the broker's log file
#
# Environment:
#   KAFKA_PORT (19092)       client port; the controller listens on KAFKA_PORT+1
#   KAFKA_DATA_DIR           logs, pid, config; default <repo>/.tmp/kafka-$KAFKA_PORT
#   KAFKA_HEAP (-Xmx512m -Xms256m)
#   KAFKA_START_TIMEOUT (60) seconds to wait for the broker to answer
#   KAFKA_STOP_TIMEOUT (30)  seconds to wait after SIGTERM before SIGKILL
#   KAFKA_AUTO_CREATE_TOPICS (false)
#
# Needs Java 17+ and, the first time, Maven (jars come from Maven Central through pom.xml
# next to this script, into lib/, which git ignores). Only stdout carries the address;
# progress and errors go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-19092}"
controller_port="$((port + 1))"
data_dir="${KAFKA_DATA_DIR:-$repo/.tmp/kafka-$port}"
lib="$here/lib"
pid_file="$data_dir/broker.pid"
log_file="$data_dir/broker.log"
address="127.0.0.1:$port"
start_timeout="${KAFKA_START_TIMEOUT:-60}"
stop_timeout="${KAFKA_STOP_TIMEOUT:-30}"

say() { echo "local-broker: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# Answers 0 when a Kafka broker on 127.0.0.1:$port serves a Metadata request (v4, which Kafka
# 4 still serves) that lists at least one broker: the socket is open, the broker has
# registered with the controller and is unfenced. Plain node, no packages, so it works
# before `npm ci` too.
probe() {
  node -e '
    const net = require("node:net");
    const port = Number(process.argv[1]);
    const clientId = Buffer.from("local-broker-probe");
    const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4 + 1);
    let o = 0;
    o = body.writeInt16BE(3, o); // api key: Metadata
    o = body.writeInt16BE(4, o); // version 4
    o = body.writeInt32BE(1, o); // correlation id
    o = body.writeInt16BE(clientId.length, o);
    o += clientId.copy(body, o);
    o = body.writeInt32BE(-1, o); // topics: null = all
    body.writeInt8(0, o); // allow_auto_topic_creation: false
    const frame = Buffer.alloc(4);
    frame.writeInt32BE(body.length);
    const sock = net.connect({ host: "127.0.0.1", port });
    const fail = () => { sock.destroy(); process.exit(1); };
    sock.setTimeout(2000, fail);
    sock.on("error", fail);
    sock.on("connect", () => sock.write(Buffer.concat([frame, body])));
    let buf = Buffer.alloc(0);
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return;
      // size, correlation id, throttle_time_ms, then the brokers array length
      const ok = buf.readInt32BE(4) === 1 && buf.readInt32BE(12) > 0;
      sock.destroy();
      process.exit(ok ? 0 : 1);
    });
    sock.on("end", fail);
  ' "$port" >/dev/null 2>&1
}

# The pid of our broker when its process is alive, else nothing.
running_pid() {
  [ -f "$pid_file" ] || return 0
  local pid
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= 2>/dev/null | grep -q 'kafka\.Kafka'; then
    echo "$pid"
  fi
}

# The jars are complete when lib/.complete holds the hash of the pom they came from.
pom_hash() { cksum <"$here/pom.xml" | cut -d' ' -f1; }

fetch_jars() {
  if [ -f "$lib/.complete" ] && [ "$(cat "$lib/.complete")" = "$(pom_hash)" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "the Kafka jars are not in $lib yet and Maven (mvn) is not installed: install Maven 3.6+ (they come from Maven Central), or use Docker: docker compose up kafka"
  say "fetching the Kafka jars from Maven Central into $lib (once)"
  rm -rf "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2 ||
    die "mvn could not fetch the Kafka jars (see above)"
  pom_hash >"$lib/.complete"
}

check_java() {
  command -v java >/dev/null 2>&1 || die "java is not installed: Kafka 4 needs Java 17 or newer"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')"
  case "$v" in
  1.* | 9 | 1[0-6]) die "Kafka 4 needs Java 17 or newer; java here is $v" ;;
  esac
}

write_config() {
  mkdir -p "$data_dir/logs"
  sed -e "s|@PORT@|$port|g" \
    -e "s|@CONTROLLER_PORT@|$controller_port|g" \
    -e "s|@LOG_DIR@|$data_dir/logs|g" \
    -e "s|@AUTO_CREATE_TOPICS@|${KAFKA_AUTO_CREATE_TOPICS:-false}|g" \
    "$here/server.properties" >"$data_dir/server.properties"
  cat >"$data_dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = warn
logger.state-change.name = state.change.logger
logger.state-change.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
logger.log.name = org.apache.kafka.storage.internals.log
logger.log.level = warn
logger.unified-log.name = kafka.log
logger.unified-log.level = warn
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = warn
EOF
}

# The JVM's options and class path, in java_args.
java_args=()
set_java_args() {
  # shellcheck disable=SC2206 # KAFKA_HEAP is a list of options
  java_args=(${KAFKA_HEAP:--Xmx512m -Xms256m} -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$data_dir/log4j2.properties" -cp "$lib/*")
}

format_storage() {
  [ -f "$data_dir/logs/meta.properties" ] && return 0
  # A KRaft cluster id: 16 random bytes, base64url without padding.
  local cluster_id
  # a random base64url UUID; one that starts with "-" would be read as an option by the tool's
  # argument parser (and Kafka's own generator never makes one), so draw again
  cluster_id="-"
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  say "formatting storage in $data_dir/logs (cluster id $cluster_id)"
  if ! java "${java_args[@]}" kafka.tools.StorageTool format --cluster-id "$cluster_id" \
    --config "$data_dir/server.properties" --ignore-formatted >"$data_dir/format.log" 2>&1; then
    tail -n 40 "$data_dir/format.log" >&2
    die "formatting the storage failed (all output in $data_dir/format.log)"
  fi
}

start() {
  mkdir -p "$data_dir"
  # One start at a time per data dir (vitest's global setup and a shell may race).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$data_dir/.start.lock"
    flock 9
  fi
  local pid
  pid="$(running_pid)"
  if [ -z "$pid" ]; then
    rm -f "$pid_file"
    if probe; then
      die "something else already serves Kafka on $address (no broker of ours in $data_dir): stop it, use it through MMSSR_KAFKA_BROKERS=$address, or pick another KAFKA_PORT"
    fi
    check_java
    fetch_jars
    write_config
    set_java_args
    format_storage
    say "starting the broker on $address (log: $log_file)"
    : >"$log_file"
    # setsid: the broker outlives this shell and the terminal or test run that started it.
    local detach=()
    command -v setsid >/dev/null 2>&1 && detach=(setsid)
    (cd "$data_dir" && exec 9>&- "${detach[@]}" nohup java "${java_args[@]}" kafka.Kafka \
      "$data_dir/server.properties" >>"$log_file" 2>&1 </dev/null) &
    echo $! >"$pid_file"
  fi
  local deadline=$((SECONDS + start_timeout))
  while ! probe; do
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      say "the broker exited during start; last lines of $log_file:"
      tail -n 40 "$log_file" >&2 || true
      rm -f "$pid_file"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "the broker did not answer on $address within ${start_timeout}s; last lines of $log_file:"
      tail -n 40 "$log_file" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  echo "$address"
}

stop() {
  local pid
  pid="$(running_pid)"
  if [ -z "$pid" ]; then
    rm -f "$pid_file"
    say "not running ($data_dir)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "no exit ${stop_timeout}s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
  say "stopped"
}

status() {
  if [ -n "$(running_pid)" ] && probe; then
    echo "$address"
    return 0
  fi
  return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
logs) echo "$log_file" ;;
*)
  echo "usage: $0 start|stop|status|logs" >&2
  exit 2
  ;;
esac
