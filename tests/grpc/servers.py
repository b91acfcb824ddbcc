"""gRPC backends for flotilla's proxyless gRPC end-to-end tests.

Usage: servers.py NAME...  Starts one gRPC server per NAME on a free loopback port, each with
  - /flotilla.test.Echo/Who (unary, raw bytes): answers with the server's NAME, so a client
    can count which backend served each call;
  - grpc.health.v1.Health, service "" SERVING (what flotilla's grpc health check probes).
Prints {"NAME": port, ...} as one JSON line once every server listens, then reads commands,
one per line, answering each with "ok":
  health NAME SERVING|NOT_SERVING   flips what NAME's health service reports.
Exits when stdin closes (the test harness dropping the process).
"""

import json
import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "flotilla.test.Echo"


def start(name):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    who = grpc.unary_unary_rpc_method_handler(lambda request, context: name.encode())
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Who": who}),)
    )
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, checker, port


def main():
    running = {name: start(name) for name in sys.argv[1:]}
    print(json.dumps({name: r[2] for name, r in running.items()}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) == 3 and words[0] == "health" and words[1] in running:
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            running[words[1]][1].set("", status)
            print("ok", flush=True)
        else:
            print(f"unknown command: {line.strip()}", flush=True)
    for server, _, _ in running.values():
        server.stop(grace=None)


if __name__ == "__main__":
    main()
