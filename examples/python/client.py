#!/usr/bin/env python3
"""A CygnetCI client in Python, from code generated out of proto/ (see generate.sh).

Authenticates with an API token, lists the caller's customers and each one's agents, runs a
pipeline and follows its log live until it ends. Exits 0 when the run succeeded.

    ./generate.sh cygnet-python
    python3 client.py --generated cygnet-python --server localhost:50051 --token "$TOKEN" \
                      --pipeline 1 [--customer 1] [--param NAME=VALUE ...] [--ca ca.pem]

Without --customer the caller's default customer is used.
"""

import argparse
import os
import sys


def generated_modules(directory):
    """Imports the code generate.sh wrote into `directory`."""
    if not os.path.isdir(os.path.join(directory, "cygnet", "v1")):
        sys.exit(
            f"no generated code in {directory!r}: run examples/python/generate.sh {directory} "
            "first (or pass --generated DIR)"
        )
    sys.path.insert(0, os.path.abspath(directory))
    global grpc, agents, agents_grpc, pipelines, pipelines_grpc, tenancy, users, users_grpc
    import grpc
    from cygnet.v1 import (
        agent_service_pb2 as agents,
        agent_service_pb2_grpc as agents_grpc,
        pipeline_service_pb2 as pipelines,
        pipeline_service_pb2_grpc as pipelines_grpc,
        tenancy_pb2 as tenancy,
        user_service_pb2 as users,
        user_service_pb2_grpc as users_grpc,
    )


def connect(server, ca_file, token):
    """A channel, and the metadata each call needs.

    Over TLS the token travels as call credentials on the channel. gRPC refuses call
    credentials on a plaintext channel (a local server), so there the token goes into each
    call's metadata instead.
    """
    if ca_file:
        with open(ca_file, "rb") as ca:
            tls = grpc.ssl_channel_credentials(root_certificates=ca.read())
        bearer = grpc.access_token_call_credentials(token)
        credentials = grpc.composite_channel_credentials(tls, bearer)
        return grpc.secure_channel(server, credentials), None
    return grpc.insecure_channel(server), [("authorization", f"Bearer {token}")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generated",
        default=os.environ.get("CYGNET_PYTHON_GENERATED", "cygnet-python"),
        help="where generate.sh wrote the code (default: ./cygnet-python)",
    )
    parser.add_argument("--server", default="localhost:50051", help="host:port")
    parser.add_argument("--token", default=os.environ.get("CYGNET_TOKEN"), required=False)
    parser.add_argument("--customer", type=int, default=0)
    parser.add_argument("--pipeline", type=int, required=True)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--ca", help="CA certificate (PEM) of a TLS server")
    args = parser.parse_args()
    if not args.token:
        parser.error("--token (or CYGNET_TOKEN) is required")
    generated_modules(args.generated)

    conn, metadata = connect(args.server, args.ca, args.token)
    user_service = users_grpc.UserServiceStub(conn)
    agent_service = agents_grpc.AgentServiceStub(conn)
    pipeline_service = pipelines_grpc.PipelineServiceStub(conn)

    try:
        me = user_service.GetCurrentUser(users.GetCurrentUserRequest(), metadata=metadata)
    except grpc.RpcError as error:
        print(f"cannot sign in: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    print(f"signed in as {me.user.username}")
    for membership in me.memberships:
        customer = membership.customer
        role = tenancy.Role.Name(membership.membership.role)
        marker = " (default)" if membership.membership.is_default else ""
        print(f"customer {customer.id} {customer.name}: {role}{marker}")
        listed = agent_service.ListAgents(
            agents.ListAgentsRequest(customer_id=customer.id), metadata=metadata
        )
        for agent in listed.agents:
            status = agents.AgentStatus.Name(agent.status)
            print(f"  agent {agent.name} {status} cpu={agent.latest.cpu_percent:.0f}%")

    customer_id = args.customer or me.default_customer_id
    if not customer_id:
        print("no default customer for this user: pass --customer ID", file=sys.stderr)
        return 2
    parameters = dict(param.split("=", 1) for param in args.param)
    try:
        execution = pipeline_service.RunPipeline(
            pipelines.RunPipelineRequest(
                customer_id=customer_id, pipeline_id=args.pipeline, parameters=parameters
            ),
            metadata=metadata,
        ).execution
    except grpc.RpcError as error:
        print(f"cannot run: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    print(f"execution {execution.id} queued")

    final = execution
    updates = pipeline_service.WatchExecution(
        pipelines.WatchExecutionRequest(customer_id=customer_id, execution_id=execution.id),
        metadata=metadata,
    )
    for update in updates:
        kind = update.WhichOneof("update")
        if kind == "log":
            sys.stdout.write(update.log.text)
        elif kind == "execution":
            final = update.execution
    status = pipelines.ExecutionStatus.Name(final.status)
    print(f"execution {final.id} {status}")
    return 0 if final.status == pipelines.EXECUTION_STATUS_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
