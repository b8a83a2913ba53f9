"""``python -m fedhub.fl.market_host``: the strategy host, where a marketplace strategy's
code runs, in a process that does not speak Dask.

Owner: the Unix account of the Dask worker that starts it (the buying tenant's,
``fedhub_t_<slug>``): it is a child of that worker process, one per (worker process, source
SHA-256), kept for later calls (:func:`call_host`). It gets a fresh 0700 temporary folder as
its working folder and ``HOME``; an environment of ``PATH``, locale, ``TZ`` and the numeric
libraries' ``OPENBLAS_*``/``OMP_*``/``MKL_*`` settings only (no ``DASK_*`` settings, no
token); no file descriptors but its standard ones (standard input and output are its
protocol pipes, standard error a log file in its folder); and a limit on its address
space (``RLIMIT_AS``: the Dask config ``fedhub.market-host.address-space``, default the
worker's memory limit, at least 1 GiB). It stops when its standard input reaches EOF (the
worker closed it or died), or on SIGTERM, which the kernel sends when the worker's thread
that started it ends (``PR_SET_PDEATHSIG``), and removes its folder.

The pipe protocol carries plain data only and is decoded without pickle on both sides:
each message is a fixed frame (``FHM1``, header length, blob length), a JSON header and one
``.npz`` blob (uncompressed, read with ``allow_pickle=False``) with the arrays the header
references. In the header, ``None``/bools/numbers/strings and lists are JSON's own; a tuple
is ``{"tuple": [...]}``, a dict ``{"dict": [[key, value], ...]}`` (keys strings or ints,
kept apart), an array ``{"array": "<name in the blob>"}`` (numbers only: kinds b, i, u, f),
a :class:`~fedhub.fl.training.ClientResult` ``{"client_result": <its fields as a dict>}``.
Anything else is a :class:`~fedhub.fl.market_source.MarketCodeError` naming the asset.
"""

from __future__ import annotations

import ctypes
import functools
import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from typing import Any

import numpy as np

from .market_source import MarketCodeError, check_params, load_strategy
from .registry import ParameterError

_FRAME = struct.Struct(">4sIQ")  # magic, header length, blob length
_MAGIC = b"FHM1"
MAX_HEADER = 256 << 20
MAX_BLOB = 16 << 30
_NUMBERS = "biuf"
_TAGS = ("tuple", "dict", "array", "client_result")
_FOLDER_PREFIX = "fedhub-market-host-"

#: Dask config keys (set them on the workers, e.g. ``DASK_FEDHUB__MARKET_HOST__HOOK_TIMEOUT``)
TIMEOUT_KEY = "fedhub.market-host.hook-timeout"
ADDRESS_SPACE_KEY = "fedhub.market-host.address-space"
DEFAULT_TIMEOUT = 300.0
#: seconds a new host may take to start and load the source (at least the hook timeout)
STARTUP_TIMEOUT = 120.0
MIN_ADDRESS_SPACE = 1 << 30
#: environment variables the host inherits from its worker: these, and the numeric
#: libraries' settings (threads, kernels: the host computes exactly as the worker would)
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_PASSED_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_")


# ------------------------------------------------------------------ the codec


class Encoder:
    """Turns plain values into one message; ``value`` raises a MarketCodeError naming
    ``ref`` and where in the message the first value that is not plain data sits."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.arrays: dict[str, np.ndarray] = {}

    def value(self, v: Any, where: str) -> Any:
        from .training import ClientResult

        if v is None or type(v) in (bool, int, float, str):
            return v
        if isinstance(v, np.generic) and v.dtype.kind in _NUMBERS:
            return v.item()
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in _NUMBERS:
                raise MarketCodeError(
                    f"{self.ref}: {where} is an array of {v.dtype}, not of numbers"
                )
            name = f"a{len(self.arrays)}"
            self.arrays[name] = v
            return {"array": name}
        if isinstance(v, bool | int | float | str):  # a subclass: its plain value
            return {bool: bool, int: int, float: float, str: str}[_base(v)](v)
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple) and type(v) is tuple:
            return {"tuple": [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            return {"dict": [[self._key(k, where), self.value(x, f"{where}.{k}")]
                             for k, x in v.items()]}  # fmt: skip
        if type(v) is ClientResult:
            return {"client_result": self.value(dict(vars(v)), where)}
        raise MarketCodeError(
            f"{self.ref}: {where} is a {type(v).__name__}; a strategy's state, extras and "
            "metrics must be numbers, strings, lists, dicts or numeric arrays"
        )

    def _key(self, k: Any, where: str) -> str | int:
        if isinstance(k, np.integer):
            return int(k)
        if type(k) in (str, int):
            return k
        raise MarketCodeError(f"{self.ref}: {where} has a key of type {type(k).__name__}")

    def message(self, doc: Any) -> bytes:
        header = json.dumps(doc, separators=(",", ":")).encode()
        blob = b""
        if self.arrays:
            buf = io.BytesIO()
            np.savez(buf, **self.arrays)
            blob = buf.getvalue()
        return _FRAME.pack(_MAGIC, len(header), len(blob)) + header + blob


def _base(v: Any) -> type:
    return next(t for t in (bool, int, float, str) if isinstance(v, t))


def encode(value: Any, ref: str, where: str = "message") -> bytes:
    encoder = Encoder(ref)
    return encoder.message(encoder.value(value, where))


def decode(header: bytes, blob: bytes, ref: str) -> Any:
    """The value a message carries; a MarketCodeError naming ``ref`` for anything that is
    not a well-formed message of plain data."""
    try:
        arrays = _arrays(blob) if blob else {}
        used: set[str] = set()
        value = _from_json(json.loads(header), arrays, used)
    except Exception as e:  # noqa: BLE001 - whatever the bytes were, they are refused
        if isinstance(e, MarketCodeError):
            raise
        raise MarketCodeError(f"{ref}: the strategy host sent a malformed message ({e})") from None
    if used != set(arrays):
        raise MarketCodeError(f"{ref}: the strategy host sent arrays its message does not use")
    return value


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        members = z.infolist()
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise ValueError("compressed members")  # no inflating past what was sent
    if sum(m.file_size for m in members) > len(blob):
        raise ValueError("members larger than the blob")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, a in arrays.items():
        if a.dtype.kind not in _NUMBERS or a.dtype.hasobject:
            raise ValueError(f"array {name} of {a.dtype}")
    return arrays


def _from_json(doc: Any, arrays: dict, used: set) -> Any:
    if doc is None or isinstance(doc, bool | int | float | str):
        return doc
    if isinstance(doc, list):
        return [_from_json(x, arrays, used) for x in doc]
    if not (isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)) in _TAGS):
        raise ValueError("an object that is not a tagged value")
    tag, body = next(iter(doc.items()))
    if tag == "array":
        if not isinstance(body, str) or body not in arrays:
            raise ValueError(f"no array {body!r}")
        used.add(body)
        return arrays[body]
    if tag == "tuple":
        if not isinstance(body, list):
            raise ValueError("a tuple that is not a list")
        return tuple(_from_json(x, arrays, used) for x in body)
    if tag == "dict":
        out = {}
        for pair in body:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError("a dict item that is not a pair")
            key = pair[0]
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise ValueError(f"a dict key {key!r}")
            out[key] = _from_json(pair[1], arrays, used)
        return out
    from .training import ClientResult

    fields = _from_json(body, arrays, used)
    if not isinstance(fields, dict) or set(fields) != set(ClientResult.__dataclass_fields__):
        raise ValueError("a client result without its fields")
    return ClientResult(**fields)


# ------------------------------------------------------------------ the host (its own process)


def _read_frame(stream) -> tuple[bytes, bytes] | None:
    head = stream.read(_FRAME.size)
    if not head:
        return None
    magic, n_header, n_blob = _FRAME.unpack(head)
    if magic != _MAGIC or n_header > MAX_HEADER or n_blob > MAX_BLOB:
        raise ValueError("not a message of the strategy host's protocol")
    return stream.read(n_header), stream.read(n_blob)


#: what each hook's answer holds, named in the errors
_ANSWERS = {
    "load": (),
    "initialize": ("state", "proximal_mu"),
    "configure": ("configure_round", "client_extra", "rng state", "state", "proximal_mu"),
    "aggregate": ("aggregate's weights", "evaluate", "state", "proximal_mu"),
    "evaluate": ("evaluate", "state", "proximal_mu"),
}


def _run_hook(cls, ref: str, op: str, args: list) -> list:
    if op == "initialize":
        params, init_params, num_clients = args
        obj = cls(**check_params(cls, ref, params))
        obj.initialize(init_params, num_clients)
        return [vars(obj), float(obj.proximal_mu)]
    obj = cls.__new__(cls)
    vars(obj).update(args[0])
    if op == "configure":
        rnd, client_ids, num_sample, rng_state = args[1:]
        rng = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
        rng.bit_generator.state = rng_state
        chosen = [int(c) for c in obj.configure_round(rnd, client_ids, num_sample, rng)]
        extras = {cid: obj.client_extra(rnd, cid) for cid in chosen}
        return [chosen, extras, rng.bit_generator.state, vars(obj), float(obj.proximal_mu)]
    if op == "aggregate":
        rnd, params, results = args[1:]
        new = np.asarray(obj.aggregate(rnd, params, results))
        metrics = obj.evaluate(rnd, new.astype(np.float32))
        return [new, metrics, vars(obj), float(obj.proximal_mu)]
    if op == "evaluate":
        rnd, params = args[1:]
        return [obj.evaluate(rnd, params), vars(obj), float(obj.proximal_mu)]
    raise ValueError(f"unknown operation {op!r}")


def _answer(request: dict, loaded: dict) -> bytes:
    ref, op = request["ref"], request["op"]
    encoder = Encoder(ref)
    try:
        if op == "load":
            loaded["cls"] = load_strategy(request["source"], request["sha256"], ref)
            return encoder.message({"dict": [["ok", []]]})
        result = _run_hook(loaded["cls"], ref, op, request["args"])
        doc = [encoder.value(v, w) for v, w in zip(result, _ANSWERS[op], strict=True)]
        return encoder.message({"dict": [["ok", doc]]})  # the values are encoded
    except ParameterError as e:
        error = f"{ref}: {e}"
    except MarketCodeError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - any error of the asset's code is the asset's
        hook = {"configure": "configure_round"}.get(op, op)
        error = f"{ref}: {hook} raised {type(e).__name__}: {e}"
    return encode({"error": error}, ref)


def main() -> None:
    """Serve requests on the pipes until EOF. The protocol keeps the original standard
    input and output; the asset's ``print`` goes to standard error, ``input`` reads EOF."""
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    folder = os.getcwd()  # the worker made it for this host alone: removed when it ends
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    pipe_in = os.fdopen(os.dup(0), "rb")
    pipe_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)

    def leave(code: int, *_) -> None:
        if os.path.basename(folder).startswith(_FOLDER_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(code)

    # SIGTERM when the worker's thread that started it ends (a hook still running when its
    # worker died; an idle host reads EOF instead): no thread of our own watches for that
    signal.signal(signal.SIGTERM, functools.partial(leave, 0))
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    loaded: dict = {}
    while (frame := _read_frame(pipe_in)) is not None:
        request = decode(*frame, ref="the strategy host")
        pipe_out.write(_answer(request, loaded))
        pipe_out.flush()
    leave(0)


# ------------------------------------------------------------------ the worker's side


class HostFailed(Exception):
    """The host did not answer in time, or died."""


class StrategyHost:
    """One host process, started by a worker for one source (see the module)."""

    def __init__(self, sha256: str, *, address_space: int) -> None:
        self.sha256 = sha256
        self.lock = threading.Lock()
        self.folder = tempfile.mkdtemp(prefix=_FOLDER_PREFIX)  # 0700
        env = {
            k: v
            for k, v in os.environ.items()
            if k in _PASSED_ENV or k.startswith(_PASSED_PREFIXES)
        }
        env.update(HOME=self.folder, TMPDIR=self.folder)
        self._log = open(os.path.join(self.folder, "host.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "fedhub.fl.market_host", str(address_space)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=self.folder,
            env=env,
            close_fds=True,
            umask=0o077,
        )
        self._log.close()
        os.set_blocking(self.proc.stdin.fileno(), False)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.loaded = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, doc: dict, ref: str, timeout: float) -> Any:
        """Send one request and wait for its answer: the decoded ``ok`` value, a
        MarketCodeError for an ``error`` answer, :class:`HostFailed` otherwise."""
        deadline = time.monotonic() + timeout
        encoder = Encoder(ref)
        payload = encoder.message(encoder.value(doc, "request"))
        self._write(payload, deadline)
        head = self._read(_FRAME.size, deadline)
        magic, n_header, n_blob = _FRAME.unpack(head)
        if magic != _MAGIC or n_header > MAX_HEADER or n_blob > MAX_BLOB:
            raise HostFailed("answered outside the protocol")
        answer = decode(self._read(n_header, deadline), self._read(n_blob, deadline), ref)
        if isinstance(answer, dict) and set(answer) == {"ok"}:
            return answer["ok"]
        if isinstance(answer, dict) and set(answer) == {"error"}:
            message = str(answer["error"])[:4000]
            raise MarketCodeError(message if message.startswith(f"{ref}:") else f"{ref}: {message}")
        raise HostFailed("answered outside the protocol")

    def _write(self, data: bytes, deadline: float) -> None:
        fd, view = self.proc.stdin.fileno(), memoryview(data)
        while view:
            if not select.select([], [fd], [], self._left(deadline))[1]:
                raise HostFailed("timeout")
            try:
                view = view[os.write(fd, view[: 1 << 20]) :]
            except BrokenPipeError:
                raise HostFailed("exited") from None

    def _read(self, n: int, deadline: float) -> bytes:
        fd, chunks, left = self.proc.stdout.fileno(), [], n
        while left:
            if not select.select([fd], [], [], self._left(deadline))[0]:
                raise HostFailed("timeout")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise HostFailed("exited")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HostFailed("timeout")
        return left

    def last_words(self) -> str:
        try:
            with open(os.path.join(self.folder, "host.log"), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def close(self) -> None:
        """Kill and reap the process, remove its folder."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


#: this worker process's hosts, by the source's SHA-256
_HOSTS: dict[str, StrategyHost] = {}
_HOSTS_LOCK = threading.Lock()


def _settings() -> tuple[float, int]:
    import dask
    from dask.utils import parse_bytes

    timeout = float(dask.config.get(TIMEOUT_KEY, None) or DEFAULT_TIMEOUT)
    space = dask.config.get(ADDRESS_SPACE_KEY, None)
    if space:
        return timeout, parse_bytes(space) if isinstance(space, str) else int(space)
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        limit = None
    return timeout, max(int(limit or 2 * MIN_ADDRESS_SPACE), MIN_ADDRESS_SPACE)


def call_host(source: str, sha256: str, ref: str, op: str, args: list) -> list:
    """Run hook ``op`` of the source's strategy in this worker's host for it (started, or
    restarted if it has exited since the last call) and return its answer, a list of
    plain values. A hook that fails, times out or kills its host: a MarketCodeError naming
    ``ref`` (the host is stopped; the next call starts a new one)."""
    timeout, address_space = _settings()
    with _HOSTS_LOCK:
        host = _HOSTS.get(sha256)
        if host is not None and not host.alive():
            host.close()  # died between calls: nothing of a run's is lost, start another
            host = None
        if host is None:
            host = _HOSTS[sha256] = StrategyHost(sha256, address_space=address_space)
    with host.lock:
        try:
            if not host.loaded:
                doc = {"op": "load", "ref": ref, "source": source, "sha256": sha256}
                host.request(doc, ref, max(timeout, STARTUP_TIMEOUT))  # imports torch
                host.loaded = True
            answer = host.request({"op": op, "ref": ref, "args": args}, ref, timeout)
        except HostFailed as e:
            if host.alive():
                host.proc.kill()
            host.proc.wait()
            words = host.last_words()
            _drop(host)
            hook = {"configure": "configure_round"}.get(op, op)
            if str(e) == "timeout":
                if not host.loaded:
                    hook, timeout = "loading the source", max(timeout, STARTUP_TIMEOUT)
                raise MarketCodeError(
                    f"{ref}: {hook} did not finish in time ({timeout:g} s)"
                ) from None
            why = f"; its last words: {words}" if words else ""
            raise MarketCodeError(
                f"{ref}: the strategy host {e} during {hook} "
                f"(exit code {host.proc.returncode}){why}"
            ) from None
        except BaseException as e:
            if not isinstance(e, MarketCodeError) or not host.loaded:
                _drop(host)  # a failed load, or an error of ours: do not reuse it
            raise
    if not isinstance(answer, list) or len(answer) != len(_ANSWERS[op]):
        raise MarketCodeError(f"{ref}: the strategy host answered {op} outside the protocol")
    return answer


def _drop(host: StrategyHost) -> None:
    with _HOSTS_LOCK:
        if _HOSTS.get(host.sha256) is host:
            del _HOSTS[host.sha256]
    host.close()


def host_pids(sha256: str | None = None) -> list[int]:
    """Process ids of this worker's live hosts (of one source, if given)."""
    with _HOSTS_LOCK:
        return [h.proc.pid for h in _HOSTS.values() if h.alive() and sha256 in (None, h.sha256)]


if __name__ == "__main__":
    main()
