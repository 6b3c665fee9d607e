"""The recipe search's Optuna storage: one way to open it, with its password kept out of sight.

The storage is an SQLAlchemy URL: ``sqlite:///PATH`` (the default, one machine) or ``postgresql://USER:PASSWORD@
HOST:PORT/DB`` (several machines on one study; the driver is the ``[postgres]`` extra). Its password never
appears in what the project prints, logs or writes: every URL shown is :func:`masked`, a trial's training
process gets the URL through the environment (:data:`ENV`, named on its command line as ``--storage
env:COCO2YOLO_STORAGE``), never on its command line, and error messages are scrubbed of it. A password can
also stay out of the experiment file altogether: ``postgresql://USER@HOST/DB`` with ``PGPASSWORD`` or
``~/.pgpass``, which the driver reads.

Each process holds few connections (PostgreSQL refuses past ``max_connections``, 100 by default: Optuna users
meet "too many clients" with many workers): a pool of one, two more while a trial's heartbeat and its worker
overlap, checked before use (``pool_pre_ping``), and a connection timeout, so an unreachable server is one line.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from coco2yolo.errors import UserError

ENV = "COCO2YOLO_STORAGE"
DIALECTS = {"sqlite": None, "postgresql": "coco2yolo[postgres]", "mysql": "pymysql"}
POOL = {"pool_size": 1, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 600}
CONNECT_TIMEOUT = 10  # seconds


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - an unparsable URL: nothing known to hide beyond masking
        return None


def masked(url: str) -> str:
    """A storage URL as it may be shown: its password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse shows no more than its scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def scrub(text: str, url: str) -> str:
    """``text`` with ``url``'s password (and the URL itself) replaced, for an error message."""
    pw = _password(url)
    text = text.replace(url, masked(url))
    return text.replace(pw, "***") if pw else text


def check(url: str, where: str) -> None:
    """One line unless ``url`` is a database URL Optuna's RDB storage can open with an installed driver."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise UserError(f"{where} {masked(url)} is not a database URL (sqlite:///PATH, postgresql://USER:PASSWORD@HOST"
                        "/DB, or a path for SQLite)") from None
    dialect = u.get_backend_name()
    if dialect not in DIALECTS:
        raise UserError(f"{where} {masked(url)}: database {dialect!r} is not one Optuna stores studies in (allowed: "
                        f"{', '.join(DIALECTS)})")
    try:
        port = u.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise UserError(f"{where} {masked(url)}: its port is not a port (1 to 65535)")
    if dialect == "sqlite" and not u.database:
        raise UserError(f"{where} {masked(url)}: SQLite needs a file (sqlite:///PATH): a study in memory is lost at "
                        "exit and no other process sees it")
    try:
        u.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError, AttributeError):
        raise UserError(f"{where} {masked(url)}: the driver for {u.drivername} is not installed (pip install "
                        f"'{DIALECTS[dialect]}')") from None


def from_argument(value: str) -> str:
    """``train_yolo.py --storage``: a URL, or ``env:NAME`` for the URL in environment variable NAME."""
    if value.startswith("env:"):
        name = value[4:]
        url = os.environ.get(name)
        if not url:
            raise UserError(f"--storage {value}: the environment variable {name} is not set (the recipe search sets it "
                            "for each trial)")
        return url
    return value


def open_storage(url: str, **kwargs: Any) -> Any:
    """Optuna's RDB storage at ``url`` (``kwargs``: RDBStorage's, e.g. heartbeats), bounded in connections;
    one scrubbed line when it cannot be opened (a wrong password, an unreachable server)."""
    from optuna.storages import RDBStorage

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        engine = {**POOL, "connect_args": {"connect_timeout": CONNECT_TIMEOUT, "application_name": "coco2yolo"}}
    else:
        engine = dict(POOL)
    last: Exception | None = None
    for attempt in range(3):  # two processes creating the tables of a new study at once: one retries
        try:
            return RDBStorage(url, engine_kwargs=engine, **kwargs)
        except Exception as err:  # noqa: BLE001 - a wrong URL, a missing driver, an unreachable server, a race
            last = err
            text = str(err)
            if "already exists" in text or "duplicate key" in text or "UniqueViolation" in text:
                time.sleep(0.5 + random.random())
                continue
            break
    why = " ".join(scrub(str(last), url).split())
    for cut in ("(Background on this error", "[SQL:"):
        why = why.split(cut)[0].strip()
    raise UserError(f"search storage {masked(url)}: cannot open it ({why[:200]})") from None
