#!/usr/bin/env bash
# Compile and run JavaSmoke.java (RabbitMQ Java client from Debian's librabbitmq-client-java).
#   usage: run_java.sh AMQP_URL
# Jars: $AMQP_CLIENT_JAR / $SLF4J_API_JAR override; otherwise found via dpkg -L, then /usr/share/java,
# then Debian's /usr/share/maven-repo. slf4j-nop (if present) silences the "no binding" warning.
# Exit status is the smoke program's (non-zero on any failed check or setup error).
set -euo pipefail
url=${1:?usage: run_java.sh AMQP_URL}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# find_jar NAME PACKAGE: the first existing NAME.jar or NAME-<version>.jar
find_jar() {
  local name=$1 pkg=$2 f
  for f in $( { dpkg -L "$pkg" 2>/dev/null || true; } | grep -E "/${name}(-[0-9][0-9.]*)?\.jar\$") \
           /usr/share/java/"$name".jar /usr/share/java/"$name"-[0-9]*.jar \
           $(find /usr/share/maven-repo /usr/share/java -name "${name}-[0-9]*.jar" 2>/dev/null | sort -V -r); do
    if [ -f "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}

amqp=${AMQP_CLIENT_JAR:-$(find_jar amqp-client librabbitmq-client-java || true)}
slf4j=${SLF4J_API_JAR:-$(find_jar slf4j-api libslf4j-java || true)}
nop=$(find_jar slf4j-nop libslf4j-java || true)
if [ -z "$amqp" ] || [ -z "$slf4j" ]; then
  echo "run_java.sh: RabbitMQ Java client or slf4j-api jar not found (apt-get install librabbitmq-client-java)" >&2
  echo "java: 0 passed, 1 failed"
  exit 1
fi
cp="$amqp:$slf4j${nop:+:$nop}"

out=$(mktemp -d "${TMPDIR:-/tmp}/javasmoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
javac -nowarn -encoding UTF-8 -cp "$cp" -d "$out" "$here/JavaSmoke.java" || {
  echo "run_java.sh: javac failed" >&2; echo "java: 0 passed, 1 failed"; exit 1; }
java -cp "$out:$cp" JavaSmoke "$url"
