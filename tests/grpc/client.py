"""A proxyless gRPC client for flotilla's end-to-end tests: Python grpcio with its built-in
xDS support, configured by the bootstrap file named in GRPC_XDS_BOOTSTRAP.

Usage: client.py TARGET  Dials xds:///TARGET (or TARGET itself when it names a resolver,
`ipv4:127.0.0.1:PORT`: an Envoy in between) once and keeps that channel (so config changes
reach a running client), then reads JSON commands, one per line:
  {"calls": N, "metadata": [["x-user", "alice"]], "wait_for_ready": false, "timeout": 5}
makes N unary calls to /flotilla.test.Echo/Who (the backends of tests/grpc/servers.py answer
with their name) one after the other, and prints one JSON line:
  {"counts": {"NAME": calls, ...}, "failures": n, "errors": ["UNAVAILABLE: ...", ...]}
Exits when stdin closes.
"""

import json
import sys

import grpc


def main():
    target = sys.argv[1]
    if not target.startswith("ipv4:"):
        target = f"xds:///{target}"
    channel = grpc.insecure_channel(target)
    who = channel.unary_unary("/flotilla.test.Echo/Who")
    for line in sys.stdin:
        command = json.loads(line)
        counts, failures, errors = {}, 0, []
        for _ in range(command["calls"]):
            try:
                name = who(
                    b"",
                    timeout=command.get("timeout", 5),
                    metadata=[tuple(m) for m in command.get("metadata", [])],
                    wait_for_ready=command.get("wait_for_ready", False),
                ).decode()
                counts[name] = counts.get(name, 0) + 1
            except grpc.RpcError as e:
                failures += 1
                if len(errors) < 5:
                    errors.append(f"{e.code().name}: {e.details()}")
        print(json.dumps({"counts": counts, "failures": failures, "errors": errors}), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
