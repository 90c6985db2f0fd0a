"""Stand-ins for the home server's services (images/testbed/*) under testcontainers."""

from __future__ import annotations

import secrets
import time

import hvac
import requests
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from runner import images
from runner.settings import Settings


class Service(DockerContainer):
    image_name = ""
    ready_log = ""

    def __init__(self, settings: Settings, name: str | None = None):
        build_name, tag = self.image(settings)
        images.build(settings, [build_name])
        super().__init__(tag)
        self.name = name or f"offsite-test-{self.image_name}-{secrets.token_hex(3)}"
        self.with_name(self.name)
        self.waiting_for(LogMessageWaitStrategy(self.ready_log))

    def image(self, settings: Settings) -> tuple[str, str]:
        return f"testbed-{self.image_name}", images.testbed_tag(self.image_name)

    @property
    def address(self) -> str:
        wrapped = self.get_wrapped_container()
        wrapped.reload()
        return wrapped.attrs["NetworkSettings"]["IPAddress"]


class OpenBao(Service):
    """OpenBao initialised with one unseal key, unsealed, with a KV engine and a canary secret."""

    image_name = "openbao"
    ready_log = "OpenBao server started"

    def image(self, settings: Settings) -> tuple[str, str]:
        return "openbao", settings.images.openbao  # a project image: it also runs the agent

    def start(self):
        super().start()
        self.url = f"http://{self.address}:8200"
        client = hvac.Client(url=self.url)
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        self.unseal_key, self.root_token = init["keys"][0], init["root_token"]
        self.unseal()
        self.client = hvac.Client(url=self.url, token=self.root_token)
        self.client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.secrets.kv.v2.create_or_update_secret(path="canary", secret={"value": "tweety"})
                return self
            except hvac.exceptions.InvalidRequest as error:
                # a new KV v2 mount upgrades itself for a moment after it is enabled
                if "Upgrading" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def unseal(self) -> None:
        client = hvac.Client(url=self.url)
        client.sys.submit_unseal_key(self.unseal_key)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if requests.get(f"{self.url}/v1/sys/health", timeout=5).status_code == 200:
                return
            time.sleep(0.3)
        raise TimeoutError("OpenBao did not become active")

    def seal(self) -> None:
        self.client.sys.seal()


class Postgres(Service):
    image_name = "postgres"
    ready_log = "PostgreSQL init process complete"
    password = "postgres-test-password"

    def __init__(self, settings: Settings, name: str | None = None):
        super().__init__(settings, name)
        self.with_env("POSTGRES_PASSWORD", self.password)

    def start(self):
        super().start()
        deadline = time.monotonic() + 60
        while self.exec(["pg_isready"]).exit_code != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not accept connections")
            time.sleep(0.2)
        return self

    def sql(self, statements: str, database: str = "postgres", user: str = "postgres") -> str:
        result = self.exec(["psql", "-v", "ON_ERROR_STOP=1", "-qAtX", "-U", user, "-d", database, "-c", statements])
        if result.exit_code != 0:
            raise RuntimeError(result.output.decode())
        return result.output.decode()

    def load(self, script: str) -> None:
        result = self.exec(["sh", "-c",
                            f"psql -v ON_ERROR_STOP=1 -qX -U postgres -d postgres <<'EOSQL'\n{script}\nEOSQL"])
        if result.exit_code != 0:
            raise RuntimeError(result.output.decode())

    def table_contents(self) -> dict:
        """Every user table of every database, rows sorted: what a restore must reproduce."""
        contents = {}
        for database in self.sql("SELECT datname FROM pg_database "
                                 "WHERE NOT datistemplate AND datname <> 'postgres'").split():
            tables = self.sql("SELECT schemaname || '.' || tablename FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", database).split()
            for table in tables:
                rows = self.sql(f"SELECT t::text FROM {table} t", database)
                contents[f"{database}:{table}"] = sorted(rows.splitlines())
        return contents


class S3(Service):
    image_name = "s3"
    ready_log = "Running on"

    def start(self):
        super().start()
        import boto3

        self.endpoint = f"http://{self.address}:9000"
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="AKIATESTTESTTEST", aws_secret_access_key="test-secret-key")
        return self
