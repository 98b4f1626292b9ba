"""docker-compose.yml, checked statically (no Docker engine runs the tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from adamz.cli import build_parser
from adamz.cli._study_commands import DashboardCommand, ProxyCommand, WorkerCommand

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def with_defaults(text: str) -> str:
    """Compose's ``${NAME:-default}`` substitution, with the defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def test_compose_defines_postgres_the_proxy_workers_and_the_dashboard_from_our_dockerfile() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "proxy", "worker", "dashboard"}
    assert (ROOT / "Dockerfile").is_file()
    assert {services[name]["build"] for name in ("proxy", "worker", "dashboard")} == {"."}


def test_postgres_has_a_volume_and_a_healthcheck_the_others_wait_for() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    for name in ("proxy", "worker", "dashboard"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_workers_reach_postgres_through_the_grpc_proxy_once_it_answers() -> None:
    services = compose()["services"]
    proxy, worker = services["proxy"], services["worker"]
    args = build_parser().parse_args(proxy["command"])
    assert isinstance(args.command, ProxyCommand)
    assert proxy["environment"]["ADAMZ_STORAGE"].startswith("postgresql+psycopg://")
    assert worker["environment"]["ADAMZ_STORAGE"] == f"grpc://proxy:{args.port}"
    assert worker["depends_on"]["proxy"]["condition"] == "service_healthy"
    assert f"port={args.port}" in " ".join(proxy["healthcheck"]["test"])
    assert all(port.startswith("127.0.0.1:") for port in proxy["ports"])


def test_no_password_is_written_in_the_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if "PASSWORD" in line and ":" in line and not line.lstrip().startswith("#"):
            value = line.split(":", 1)[1]
            assert "${POSTGRES_PASSWORD" in value, line
    storage = compose()["services"]["proxy"]["environment"]["ADAMZ_STORAGE"]
    assert re.search(r":\$\{POSTGRES_PASSWORD[^}]*\}@", storage)


def test_the_worker_runs_our_cli_on_gpus_and_can_be_scaled() -> None:
    worker = compose()["services"]["worker"]
    args = build_parser().parse_args([with_defaults(arg) for arg in worker["command"]])
    assert isinstance(args.command, WorkerCommand)
    assert args.devices == "cuda"
    assert "container_name" not in worker  # a fixed name would forbid --scale
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert worker["stop_signal"] == "SIGTERM"


def test_the_dashboard_is_published_on_loopback_only() -> None:
    dashboard = compose()["services"]["dashboard"]
    args = build_parser().parse_args(dashboard["command"])
    assert isinstance(args.command, DashboardCommand)
    assert all(port.startswith("127.0.0.1:") for port in dashboard["ports"])
    assert all(port.startswith("127.0.0.1:") for port in compose()["services"]["postgres"]["ports"])
