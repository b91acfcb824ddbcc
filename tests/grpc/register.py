"""Registers with flotilla from Python, with stubs generated from proto/ by grpcio-tools.

Usage: register.py REPO_ROOT REGISTRY STUB_DIR. Generates the stubs into STUB_DIR, opens one
registration stream and then follows commands from stdin, one per line, answering each on
stdout with one line:
  register CLUSTER ADDRESS  -> "registered CLUSTER ADDRESS" or "rejected CODE MESSAGE"
  leave                     -> "may_exit DEADLINE_PASSED" (after "draining N")
  close                     -> ends the stream and exits
"""

import os
import queue
import sys

from grpc_tools import protoc


def generate(root, out):
    proto = os.path.join(root, "proto")
    protos = os.path.join(protoc.__file__.rsplit(os.sep, 1)[0], "_proto")
    status = protoc.main([
        "grpc_tools.protoc", f"-I{proto}", f"-I{protos}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(proto, "flotilla/registry/v1/registry.proto"),
    ])
    if status != 0:
        sys.exit(f"protoc failed: {status}")
    # Make the generated directories importable as packages.
    for d in ["flotilla", "flotilla/registry", "flotilla/registry/v1"]:
        open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def main():
    root, registry, out = sys.argv[1:4]
    generate(root, out)
    import grpc
    from flotilla.registry.v1 import registry_pb2 as pb
    from flotilla.registry.v1 import registry_pb2_grpc as rpc

    requests = queue.Queue()

    def outgoing():
        while True:
            r = requests.get()
            if r is None:
                return
            yield r

    channel = grpc.insecure_channel(registry)
    responses = rpc.RegistryStub(channel).Register(outgoing())
    say = lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush())
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "register":
            cluster, address = words[1], words[2]
            requests.put(pb.RegisterRequest(register=pb.Endpoint(
                cluster=cluster, address=address, weight=1,
                metadata={"language": "python"})))
            answer = next(responses)
            if answer.HasField("registered"):
                e = answer.registered.endpoint
                say(f"registered {e.cluster} {e.address}")
            else:
                say(f"rejected {answer.rejected.code} {answer.rejected.message}")
        elif words[0] == "leave":
            requests.put(pb.RegisterRequest(leave=pb.Leave(deadline_ms=20000)))
            for answer in responses:
                if answer.HasField("draining"):
                    say(f"draining {len(answer.draining.endpoints)}")
                elif answer.HasField("may_exit"):
                    say(f"may_exit {answer.may_exit.deadline_passed}")
                    break
        elif words[0] == "close":
            requests.put(None)
            channel.close()
            return


if __name__ == "__main__":
    main()
