"""The deployment files agree with each other and with the code: docker-compose
renders, Prometheus scrapes what the services expose, and every series the
Grafana dashboard plots is one the application exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
ROLES = {"migrate": "migrate", "api": "api", "worker": "worker", "scheduler": "scheduler", "flower": "flower"}


@pytest.fixture(scope="module")
def compose() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("the docker-compose binary is not installed (.ci/run installs Debian's docker-compose)")
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def prometheus_config() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())


class TestCompose:
    def test_brings_up_every_part_of_the_stack(self, compose):
        assert {"postgres", "redis", "minio", "create-bucket", "migrate", "api", "worker", "scheduler", "flower",
                "prometheus"} <= set(compose["services"])

    def test_every_cometjobs_role_is_one_image_selected_by_command(self, compose):
        services = compose["services"]
        images = {services[name]["image"] for name in ROLES}
        assert len(images) == 1
        for name, command in ROLES.items():
            assert services[name]["command"][0] == command

    def test_services_start_after_migrations_and_the_bucket(self, compose):
        services = compose["services"]
        for name in ("api", "worker", "scheduler"):
            after = services[name]["depends_on"]
            assert after["migrate"]["condition"] == "service_completed_successfully"
            assert after["create-bucket"]["condition"] == "service_completed_successfully"
        bucket = services["create-bucket"]
        assert "mc mb" in " ".join(bucket["command"])
        storage = services["api"]["environment"]["COMETJOBS_STORAGE_URL"]
        assert storage.startswith("s3://" + bucket["environment"]["BUCKET"] + "/")

    def test_worker_exports_metrics_in_multiprocess_mode_and_is_probed(self, compose):
        worker = compose["services"]["worker"]
        assert worker["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert worker["environment"]["COMETJOBS_WORKER_METRICS_PORT"] == "9808"
        assert worker["healthcheck"]["test"][1:3] == ["cometjobs", "worker-health"]

    def test_prometheus_finds_every_api_worker_and_scheduler_replica_by_dns(self, compose):
        jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
        services = compose["services"]
        ports = {
            "api": services["api"]["command"][-1],
            "worker": services["worker"]["environment"]["COMETJOBS_WORKER_METRICS_PORT"],
            "scheduler": services["scheduler"]["command"][-1],
        }
        for role, port in ports.items():
            job = jobs[f"cometjobs-{role}"]
            assert "static_configs" not in job, f"{role}: a static target reaches one replica at random"
            [sd] = job["dns_sd_configs"]
            assert (sd["names"], str(sd["port"])) == ([role], str(port))
        mounts = " ".join(str(v) for v in services["prometheus"]["volumes"])
        assert "deploy/prometheus/prometheus.yml" in mounts

    def test_prometheus_loads_the_alert_rules_from_where_compose_mounts_them(self, compose):
        assert prometheus_config()["rule_files"] == ["rules/*.yml"]  # relative to prometheus.yml
        volumes = [str(v) for v in compose["services"]["prometheus"]["volumes"]]
        assert any("deploy/prometheus/rules:/etc/prometheus/rules" in v for v in volumes), volumes

    def test_every_published_port_is_bound_to_localhost_except_the_api(self, compose):
        for name, service in compose["services"].items():
            for port in service.get("ports", []):
                published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}"
                if name != "api":
                    assert str(published).startswith("127.0.0.1:"), (name, port)

    def test_long_running_roles_have_healthchecks_that_probe_their_work(self, compose):
        services = compose["services"]
        for name in ("api", "worker", "scheduler", "flower"):
            assert services[name]["healthcheck"]["test"], name
        assert services["scheduler"]["healthcheck"]["test"][1:3] == ["cometjobs", "scheduler-health"]
        assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])

    def test_console_secret_is_passed_to_the_api(self, compose):
        assert "COMETJOBS_CONSOLE_SECRET" in compose["services"]["api"]["environment"]


class TestDockerfile:
    def test_runtime_stage_is_separate_and_not_root(self):
        text = (ROOT / "Dockerfile").read_text()
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
        assert len(stages) >= 2
        runtime = text.split(f"AS {stages[-1]}", 1)[1]
        assert "COPY --from=build /opt/venv" in runtime
        user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
        assert user and not user[-1].startswith(("root", "0"))
        assert 'ENTRYPOINT ["cometjobs"]' in runtime


def exported_series(database: str) -> set[str]:
    """Every sample name the API and the workers can export."""
    from prometheus_client.metrics import MetricWrapperBase

    from app.core import metrics
    from app.health.exporter import PoolProcessCollector
    from app.health.metrics import DatabaseCollector, QueueCollector, StorageCollector

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names: set[str] = set()
    families = [f for m in vars(metrics).values() if isinstance(m, MetricWrapperBase) for f in m.describe()]
    families += [*DatabaseCollector().collect(), *QueueCollector().collect(), *StorageCollector().collect()]
    families += PoolProcessCollector(worker=None).collect()
    for family in families:
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


class TestDashboard:
    def test_every_series_it_plots_is_exported(self, database):
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "cometjobs.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
        used = {name for expr in exprs for name in re.findall(r"\bcometjobs_[a-z_]+", expr)}
        exported = exported_series(database)
        assert used, exprs
        assert used <= exported, used - exported
        # Nothing the issue asks ops to watch is left off the picture.
        for core in ("cometjobs_jobs", "cometjobs_job_state_duration_seconds_bucket",
                     "cometjobs_upstream_requests_total", "cometjobs_poll_lag_seconds_bucket",
                     "cometjobs_storage_copied_bytes_total", "cometjobs_webhook_attempts_total",
                     "cometjobs_webhook_pending_deliveries", "cometjobs_webhook_oldest_pending_age_seconds",
                     "cometjobs_queue_depth", "cometjobs_http_requests_total"):
            assert core in used, core

    def test_ratios_show_zero_rather_than_no_data(self):
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "cometjobs.json").read_text())
        [ratio] = [p for p in dashboard["panels"] if p["title"] == "5xx ratio"]
        assert ratio["targets"][0]["expr"].rstrip().endswith("or vector(0)")

    def test_optional_results_skipped_are_not_plotted_as_upstream_errors(self):
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "cometjobs.json").read_text())
        [ratio] = [p for p in dashboard["panels"] if p["title"] == "Error ratio, by family"]
        assert 'outcome!~"ok|skipped"' in ratio["targets"][0]["expr"]

    def test_grafana_is_provisioned_with_it(self, compose):
        volumes = " ".join(str(v) for v in compose["services"]["grafana"]["volumes"])
        assert "deploy/grafana/dashboards" in volumes and "deploy/grafana/provisioning" in volumes
