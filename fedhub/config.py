"""One configuration file for every fedhub process: ``fedhub_config.py``.

As in dask-gateway (``dask_gateway_config.py``), the file is traitlets Python config
(only ``c.Part.option = ...`` lines). The hub loads it (``fedhub up`` merges it into the
JupyterHub config; a production ``jupyterhub_config.py`` has
``load_subconfig("fedhub_config.py")``), and every service loads it at start
(:class:`fedhub.service.ServiceApp`). Where a value comes from, strongest first:

1. the file (or a ``--Part.option=...`` argument of the process);
2. the environment variable named in the option's help, a documented fallback;
3. the option's default (for the hub under ``fedhub up``: the launcher's embedded value).

:func:`describe` reports each option's value and source for ``fedhub config show``,
with secrets shown as ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from traitlets import Float, Unicode, default
from traitlets.config import Config, Configurable, LoggingConfigurable, PyFileConfigLoader

from fedhub import tiers
from fedhub.errors import ConfigError
from fedhub.tiers import store as tier_store

CONFIG_FILE_NAME = "fedhub_config.py"
CONFIG_FILE_ENV = "FEDHUB_CONFIG_FILE"

#: Environment variables that say *where* things are (set by ``fedhub up`` and the
#: launcher for every service); an option whose default follows them is a default,
#: not an environment fallback.
LOCATION_ENV = ("FEDHUB_STATE_DIR", "FEDHUB_DB_URL", CONFIG_FILE_ENV)


class Fedhub(LoggingConfigurable):
    """Settings every fedhub process shares (the hub and each service)."""

    tiers_file = Unicode(
        config=True,
        help="""The tiers file (``tiers.yaml``: tiers, quotas and the price book), named once
        for the hub and every service, so the quota the hub enforces and the prices billing
        charges come from the same file. Empty means ``$FEDHUB_TIERS`` (a fallback), else
        the ``tiers.yaml`` bundled with fedhub. Validated at start: an error stops the process.

            c.Fedhub.tiers_file = "/etc/fedhub/tiers.yaml"
        """,
    )

    stored_tiers_ttl = Float(
        tier_store.STORED_TIERS_TTL,
        min=0,
        config=True,
        help="""Seconds a process reuses the tiers it read from the database (tiers made by
        ``fedhub tiers import|clone``, docs/tier-templates.md) before reading them again: how
        long a version applied with ``fedhub tiers apply`` takes to reach a running hub and
        its services. A tier name a process does not know yet is read at once.

            c.Fedhub.stored_tiers_ttl = 30
        """,
    )

    @default("tiers_file")
    def _default_tiers_file(self):
        return os.environ.get("FEDHUB_TIERS", "")

    def apply(self) -> tiers.TierCatalog:
        """Make the configured tiers file this process's default; load and validate it."""
        tier_store.STORED_TIERS_TTL = self.stored_tiers_ttl
        path = self.tiers_file or None
        catalog = tiers.load_tiers(path)  # raises ConfigError naming the file and key
        tiers.use_tiers_file(path)
        return catalog


def default_config_file(state_dir: str | os.PathLike | None = None) -> str:
    """``$FEDHUB_CONFIG_FILE``, else ``<state dir>/fedhub_config.py`` if it exists, else ''."""
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        return str(Path(explicit).resolve())
    state = state_dir or os.environ.get("FEDHUB_STATE_DIR")
    if state:
        candidate = Path(state).resolve() / CONFIG_FILE_NAME
        if candidate.is_file():
            return str(candidate)
    return ""


def load_config_file(path: str | os.PathLike) -> Config:
    """The configuration in ``path``; a missing or broken file is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    loader = PyFileConfigLoader(path.name, path=str(path.parent.resolve()))
    try:
        return loader.load_config()
    except Exception as e:  # the file is executed: any error in it is the operator's to fix
        raise ConfigError(f"{path}: cannot load configuration ({type(e).__name__}: {e})") from None


# -- fedhub config show ----------------------------------------------------------------

_SECRET_NAME = re.compile(r"password|secret|token|api_key|private_key|credential", re.I)
_PATH_NAME = re.compile(r"_(file|path|dir|template|url|claim|env)$")
MASK = "***"


def is_secret(name: str) -> bool:
    """An option whose value is a secret (its *path* is not: ``key_file`` is shown)."""
    return bool(_SECRET_NAME.search(name)) and not _PATH_NAME.search(name)


def mask(name: str, value: Any) -> Any:
    """``value`` safe to print: secrets as ``***``, passwords inside URLs hidden."""
    if is_secret(name):
        return MASK if value not in (None, "", b"") else value
    if isinstance(value, dict):
        return {k: mask(str(k), v) for k, v in value.items()}
    if isinstance(value, str) and "://" in value and "@" in value:
        return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:" + MASK + "@", value)
    return value


def fedhub_traits(cls: type[Configurable]) -> dict[str, Any]:
    """The configurable options ``cls`` gets from fedhub's own classes (not JupyterHub's)."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.mro()):
        module = getattr(klass, "__module__", "")
        if (
            isinstance(klass, type)
            and issubclass(klass, Configurable)
            and module.startswith("fedhub")
        ):
            found.update(klass.class_own_traits(config=True))
    return dict(sorted(found.items()))


def _set_in(config: Config, cls: type[Configurable], name: str) -> bool:
    return any(section in config and name in config[section] for section in cls.section_names())


@contextmanager
def _without_fallback_env() -> Iterator[None]:
    saved = {
        k: v for k, v in os.environ.items() if k.startswith("FEDHUB_") and k not in LOCATION_ENV
    }
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def _values(cls: type[Configurable], config: Config, names: Iterable[str]) -> dict[str, Any]:
    try:
        obj = cls(config=config)
    except Exception:
        # a class whose constructor needs more (ExperimentScheduler: a database, a
        # callback) or starts work: only traitlets' own initialisation, for the defaults
        obj = cls.__new__(cls)
        try:
            Configurable.__init__(obj, config=config)
        except Exception as e:
            return {n: e for n in names}
    out = {}
    for n in names:
        try:
            out[n] = getattr(obj, n)
        except Exception as e:  # a default that needs the running hub (a user, a request)
            out[n] = e
    return out


def _shown(value: Any) -> Any:
    if isinstance(value, Exception):
        return "(computed at run time)"
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def describe(
    classes: Iterable[type[Configurable]], file_config: Config, base: Config | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{Class: {option: {"value": ..., "source": ...}}}`` for ``classes``.

    ``source`` is ``file`` (set in ``file_config``), ``env`` (a fallback environment
    variable changed the default), ``fedhub up`` (set in ``base``, the launcher's
    embedded configuration) or ``default``. Secrets are masked.
    """
    effective = Config()
    if base is not None:
        effective.merge(base)
    effective.merge(file_config)
    report: dict[str, dict[str, dict[str, Any]]] = {}
    for cls in classes:
        traits = fedhub_traits(cls)
        if not traits:
            continue
        now = _values(cls, effective, traits)
        with _without_fallback_env():
            plain = _values(cls, effective, traits)
        rows = {}
        for name in traits:
            if _set_in(file_config, cls, name):
                source = "file"
            elif base is not None and _set_in(base, cls, name):
                source = "fedhub up"
            elif not isinstance(now[name], Exception) and repr(now[name]) != repr(plain[name]):
                source = "env"
            else:
                source = "default"
            rows[name] = {"value": mask(name, _shown(now[name])), "source": source}
        report[cls.__name__] = rows
    return report
