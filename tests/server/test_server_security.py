"""``gojob server`` exposed safely: TLS (grpclib and grpcio clients), and a bearer token
checked on every call but health's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("grpclib")

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from gojob._generated import gojob_pb2 as gpb
from gojob._generated import service_pb2 as pb

from ._process import grpc_client, running_server
from .conftest import GrpcioStubs

OPENSSL = shutil.which("openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


async def test_tls_serves_grpcio_clients_and_refuses_plaintext(
    tmp_path: Path, certificate: tuple[Path, Path], grpcio_stubs: GrpcioStubs
) -> None:
    grpc: Any = pytest.importorskip("grpc")  # Google's implementation
    cert, key = certificate
    flags = ["--store", "memory://", "--tls-cert", str(cert), "--tls-key", str(key)]
    flags += ["--token", "tls-token"]
    async with running_server(tmp_path, *flags) as server:
        target = f"127.0.0.1:{server.grpc_port}"
        service_pb2 = grpcio_stubs.service_pb2

        def over_tls() -> tuple[str, str]:
            credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            with grpc.secure_channel(target, credentials) as channel:
                stub = grpcio_stubs.service_pb2_grpc.JobServiceStub(channel)
                metadata = (("authorization", "Bearer tls-token"),)
                version = stub.GetVersion(
                    service_pb2.GetVersionRequest(), timeout=20, metadata=metadata
                )
                request = service_pb2.ScheduleJobRequest(kind="add", arguments=["1", "2"])
                scheduled = stub.ScheduleJob(request, timeout=20, metadata=metadata)
            return str(version.api_version), str(scheduled.instance.kind)

        def in_plaintext() -> Any:
            with grpc.insecure_channel(target) as channel:
                stub = grpcio_stubs.service_pb2_grpc.JobServiceStub(channel)
                try:
                    stub.GetVersion(service_pb2.GetVersionRequest(), timeout=5)
                except grpc.RpcError as exc:
                    return exc.code()
            raise AssertionError("a plaintext call reached a TLS server")

        assert await trio.to_thread.run_sync(over_tls) == ("1", "add")
        assert await trio.to_thread.run_sync(in_plaintext) is grpc.StatusCode.UNAVAILABLE
        assert await server.stop() == 0


async def test_the_token_is_checked_on_every_call_but_health(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("right-token\n")
    async with (
        running_server(tmp_path, "--store", "memory://", "--token-file", str(secret)) as server,
        grpc_client(server.grpc_port) as client,
    ):
        request = pb.ScheduleJobRequest(kind="add", arguments=["1", "2"])
        with pytest.raises(GRPCError) as missing:
            await client.call(client.jobs.ScheduleJob, request)
        assert missing.value.status is Status.UNAUTHENTICATED
        assert missing.value.message == "missing bearer token (authorization metadata)"
        with pytest.raises(GRPCError) as wrong:
            await client.call(client.jobs.ScheduleJob, request, token="wrong-token")
        assert wrong.value.status is Status.UNAUTHENTICATED
        assert wrong.value.message == "invalid bearer token"
        # Streams are guarded as well.
        with pytest.raises(GRPCError) as stream:
            await client.stream(
                client.gojob.WatchEvents, gpb.WatchEventsRequest(kind="add"), _never
            )
        assert stream.value.status is Status.UNAUTHENTICATED
        # Health answers without a token.
        health = HealthStub(client.channel)
        status = await client.call(health.Check, HealthCheckRequest())
        assert status.status == HealthCheckResponse.SERVING
        # And the server kept serving the right token.
        reply = await client.call(client.jobs.ScheduleJob, request, token="right-token")
        assert reply.instance.kind == "add"
        assert await server.stop() == 0


async def _never(message: object) -> bool:
    raise AssertionError(f"no message expected, got {message}")
