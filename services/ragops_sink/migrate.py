"""``python -m ragops_sink.migrate``: bring the sink's ClickHouse schema up to date once and
exit (status 0; 1 with the error when ClickHouse refused or did not answer).

For a cluster, where the sinks run with ``RAGOPS_SINK_MIGRATIONS=require`` and wait for it:
one process applies each migration, so a table rebuild never races a second sink
(k8s/base/sink-migrate-job.yaml runs it as a Job). It reads the sink's settings (the same
``RAGOPS_SINK_CLICKHOUSE_URL``) and also applies the retention and the model prices."""

import structlog

from ragops_shared.logs import configure_logging
from ragops_shared.service import load_settings
from ragops_sink.app import Writer
from ragops_sink.settings import SinkSettings
from ragops_sink.spec import SPEC


def main() -> None:
    settings = load_settings(SinkSettings)
    configure_logging(f"{SPEC.name}-migrate", settings.platform.log_level, settings.platform.log_format)
    writer = Writer(settings.model_copy(update={"migrations": "apply"}))
    try:
        writer.open()
    except Exception as error:  # noqa: BLE001 - the Job's status and log say why
        structlog.get_logger(__name__).error("clickhouse_migration_failed", error=str(error))
        raise SystemExit(1) from None
    finally:
        writer.close()


if __name__ == "__main__":
    main()
