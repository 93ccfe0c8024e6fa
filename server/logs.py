"""Log lines for `manor` and its uvicorn: every line carries a timestamp; MANOR_LOG_FORMAT=json
gives one JSON object per line (for a log shipper). One dictConfig, applied by the CLI and
handed to uvicorn (so its workers, in their own processes, log the same way).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

_QUIETER_THAN_INFO = ("WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields of a LogRecord that are its machinery, not data the caller attached with `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """{"ts": ISO 8601 UTC with ms, "level", "logger", "message", extras..., "exc"}."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = value if isinstance(value, (str, int, float, bool)) else repr(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """The logging.config dict for `manor` and uvicorn: root, uvicorn's error and access
    loggers all to stderr through one formatter."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": TEXT_FORMAT, "datefmt": None}
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"manor": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "manor",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "level": level, "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            # APScheduler logs every job run at INFO (every few seconds): our jobs log their
            # own work, so keep only its warnings.
            "apscheduler": {"level": level if level in _QUIETER_THAN_INFO else "WARNING"},
            # websockets logs every socket's open and close at INFO: a line per socket in a
            # connect wave. The wire logs refused handshakes itself (server/transport/wire.py).
            "websockets": {"level": level if level in _QUIETER_THAN_INFO else "WARNING"},
        },
    }


def configure(log_format: str, level: str) -> dict[str, Any]:
    """Apply the config in this process; returns it for uvicorn's `log_config`."""
    config = log_config(log_format, level)
    logging.config.dictConfig(config)
    return config
