"""Version management: watch each model's base path, load and unload versions, route requests.

Mirrors TF Serving's pipeline (reference §1, §2): a FileSystemStoragePathSource-style poller
decides the *aspired* versions from the folder names and the version policy; a single manager
thread applies AvailabilityPreservingPolicy one action at a time (loads run serially in that
thread, as with TF Serving's default --num_load_threads=0). Requests read an immutable
snapshot of the AVAILABLE versions, so a rollout never blocks or fails a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.config import model_server_config_pb2

from modelserver.config_files import validate_model_config_list
from modelserver.servable import Servable
from modelserver.status import ServingError, failed_precondition, invalid_argument, not_found
from modelserver.version_names import index_versions

log = logging.getLogger(__name__)

# apis/get_model_status.proto ModelVersionStatus.State names.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


Loader = Callable[[str, int, Path], Servable]


@dataclass(frozen=True)
class VersionStatus:
    state: str
    error: ServingError | None = None


@dataclass(frozen=True)
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60
    allow_version_labels_for_unavailable_models: bool = False


@dataclass
class _Model:
    """What the manager knows about one configured model."""

    config: model_server_config_pb2.ModelConfig
    base_path: Path
    aspired: set[int] = field(default_factory=set)
    folders: dict[int, Path] = field(default_factory=dict)
    polled: bool = False
    failed: set[int] = field(default_factory=set)  # aspired versions whose load ended in error
    # Counts the config reloads since it was configured (each may change or remove it): a poll
    # that listed its folder under an older config must not commit what it found (_poll; the
    # reload polls every model itself, under the new config).
    generation: int = 0


def aspired_versions(policy, available: list[int], model: str) -> set[int]:
    """FileSystemStoragePathSource's Aspire{Latest,All,Specific}Versions."""
    choice = policy.WhichOneof("policy_choice") or "latest"
    if choice == "all":
        return set(available)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        missing = sorted(wanted - set(available))
        if missing:
            log.warning("Versions %s of model %s not found under its base path", missing, model)
        return wanted & set(available)
    keep = max(policy.latest.num_versions, 1)
    return set(sorted(available, reverse=True)[:keep])


class VersionManager:
    """Owns every model version's lifecycle and the request routing table."""

    def __init__(
        self,
        loader: Loader,
        options: ManagerOptions,
        map_base_path: Callable[[str], str] = lambda path: path,
    ) -> None:
        self._loader = loader
        self._options = options
        self._map_base_path = map_base_path
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._config_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._states: dict[str, dict[int, VersionStatus]] = {}
        # How each version's load is going, in words, for the start-up wait's log lines
        # (while retrying, GetModelStatus shows LOADING without the error, as TF Serving does).
        self._load_notes: dict[tuple[str, int], str] = {}
        self._loaded: dict[str, dict[int, Servable]] = {}
        # Request routing: replaced wholesale, never mutated, so readers need no lock.
        self._serving: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self.current_config = model_server_config_pb2.ModelServerConfig()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._manage_loop, name="version-manager", daemon=True),
            threading.Thread(target=self._poll_loop, name="base-path-poller", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ----- configuration -------------------------------------------------------------------

    def apply_config(self, config: model_server_config_pb2.ModelServerConfig, wait: bool) -> None:
        """ServerCore::ReloadConfig: validate, set labels, replace the model set, and (when
        `wait`) block until the newly added models' newest versions are AVAILABLE or failed."""
        kind = config.WhichOneof("config")
        if self.current_config.WhichOneof("config") and kind != "model_config_list":
            raise failed_precondition(  # server_core.cc: only list -> list once one is in force
                "Cannot transition to requested config. It is only legal to transition from one "
                "ModelConfigList to another."
            )
        if kind is None:
            # server_core.cc: a first config that is empty loads nothing; a later one may.
            log.info("Taking no action for empty config.")
            return
        if kind != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by this server")
        with self._config_lock:
            validate_model_config_list(config.model_config_list)
            first = not self.current_config.WhichOneof("config")
            with self._lock:
                # Labels are checked before anything loads, exactly like server_core.cc: a
                # label in the *startup* config fails unless its version is already AVAILABLE.
                self._labels = self._build_label_map(config.model_config_list)
                new_names = self._replace_models(config.model_config_list)
                self.current_config = config
            for name in list(new_names) + [m for m in self._models if m not in new_names]:
                self._poll(name)
            if wait:
                # Start-up waits in load_servables_fast.cc, a reload in server_core.cc's
                # WaitUntilModelsAvailable: their messages differ in one word.
                self._wait_until_loaded(new_names, "servable(s)" if first else "model(s)")

    def _build_label_map(self, config_list) -> dict[str, dict[str, int]]:
        labels: dict[str, dict[str, int]] = {}
        for model in config_list.config:
            states = self._states.get(model.name, {})
            for label, version in model.version_labels.items():
                existing = self._labels.get(model.name, {}).get(label)
                allowed = self._options.allow_version_labels_for_unavailable_models and (
                    existing is None or existing == version
                )
                status = states.get(version)
                if not allowed and (status is None or status.state != AVAILABLE):
                    raise failed_precondition(
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference"
                    )
                labels.setdefault(model.name, {})[label] = version
        return labels

    def _replace_models(self, config_list) -> list[str]:
        """Swaps in the new model set; models left out get no aspired versions (unload)."""
        new_names = []
        wanted = {model.name: model for model in config_list.config}
        for name, model in self._models.items():
            # An empty base path marks a model already removed (its statuses stay listed).
            if name not in wanted and model.config.base_path:
                log.info("Model %s removed from the config: unloading all its versions", name)
                model.generation += 1
                model.config = model_server_config_pb2.ModelConfig(name=name, base_path="")
                self._track_aspired(name, model.aspired, set(), model.failed)
                model.aspired = set()
        for name, model_config in wanted.items():
            base_path = Path(self._map_base_path(model_config.base_path))
            entry = self._models.get(name)
            if entry is not None and entry.config.base_path:
                entry.config, entry.base_path = model_config, base_path
                entry.generation += 1
            else:
                # New, or back after leaving the config: TF Serving starts it afresh, so a
                # version that failed before is tried again and the reload waits for it.
                self._models[name] = _Model(config=model_config, base_path=base_path)
                new_names.append(name)
            log.info("Model %s: base path %s", name, base_path)
        self._changed.notify_all()
        return new_names

    def _wait_until_loaded(self, names: list[str], noun: str) -> None:
        """Blocks like load_servables_fast: until the latest aspired version of each of `names`
        is AVAILABLE or END (older ones may still be loading; reference §0). No version folder
        at all means waiting forever, as TF Serving does."""
        last_note = time.monotonic()
        with self._lock:
            while not self._stopping.is_set():
                pending = [n for n in names if not self._settled(n)]
                if not pending:
                    break
                if time.monotonic() - last_note > 10:
                    last_note = time.monotonic()
                    for name in pending:
                        log.warning("Still waiting for model %s: %s", name, self._waiting_on(name))
                self._changed.wait(timeout=1.0)
            failures = [
                # "{" ServableId::DebugString() " due to error: " Status::ToString() "}, "
                f"{{{{name: {name} version: {latest}}} due to error: "
                f"{error.code.name}: {error.message}}}, "
                for name in names
                if (latest := self._latest(name)) in self._models[name].failed
                and (error := self._states[name][latest].error) is not None
            ]
        if failures:
            raise ServingError(
                grpc.StatusCode.UNKNOWN,
                f"{len(failures)} {noun} did not become available: {{{''.join(failures)}}}",
            )

    def _waiting_on(self, name: str) -> str:
        """What start-up waits for, for a log line (the lock held)."""
        model, latest = self._models[name], self._latest(name)
        if latest is None:
            which = " the version policy wants" if model.folders else " yet"
            return f"no version folder{which} under {model.base_path}"
        return self._load_notes.get((name, latest), f"version {latest} is waiting to load")

    def _latest(self, name: str) -> int | None:
        """The newest aspired version: the one start-up and a reload wait for."""
        return max(self._models[name].aspired, default=None)

    def _settled(self, name: str) -> bool:
        model, latest = self._models[name], self._latest(name)
        if not model.polled or latest is None:
            return False
        return latest in self._loaded.get(name, {}) or latest in model.failed

    # ----- polling -------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        interval = self._options.file_system_poll_wait_seconds
        if interval <= 0:  # 0 = poll exactly once (done by apply_config)
            return
        while not self._stopping.wait(interval):
            for name in list(self._models):
                try:
                    self._poll(name)
                except Exception:  # one model's bad poll must not end polling for every model
                    log.exception("Polling the base path of model %s failed", name)

    def _poll(self, name: str) -> None:
        """One FileSystemStoragePathSource poll: re-emit the complete aspired list."""
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.config.base_path:
                return
            base_path = model.base_path
            policy = model.config.model_version_policy
            generation = model.generation
        try:
            children = os.listdir(base_path)
        except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
            log.error("Unable to list base path %s of model %s: %s", base_path, name, error)
            return
        names, duplicates = index_versions(children)
        for version, loaded, ignored in duplicates:  # IndexChildrenByVersion's words
            log.warning("Duplicate version directories detected. Version %d will be loaded from "
                        "%s, %s will be ignored.", version, loaded, ignored)  # fmt: skip
        folders = {version: base_path / child for version, child in names.items()}
        aspired = aspired_versions(policy, list(folders), name)
        with self._lock:
            # A config reload meanwhile (the folder listed without the lock): what this poll
            # found follows the old config. Committed, a model the reload removed was loaded
            # again and served for good, and a version its new policy dropped came back.
            # TF Serving cannot: file_system_storage_path_source.cc polls and takes a new
            # config (UpdateConfig) under one mutex.
            if self._models.get(name) is not model or model.generation != generation:
                return
            if not model.polled or aspired != model.aspired:
                if not folders:
                    log.warning("No versions of model %s found under %s", name, base_path)
                # Why a served version goes: its folder, not the policy (a rollback by removal).
                for version in sorted(model.aspired - set(folders)):
                    log.info("Version %d of model %s: its folder is gone from %s; it will be "
                             "unloaded", version, name, base_path)  # fmt: skip
                log.info("Model %s: aspired versions %s", name, sorted(aspired))
            # A failed version that is no longer aspired may be retried if it comes back.
            model.failed &= aspired
            self._track_aspired(name, model.aspired, aspired, model.failed)
            model.aspired, model.folders, model.polled = aspired, folders, True
            self._changed.notify_all()

    def _track_aspired(self, name: str, before: set[int], after: set[int], failed: set[int]):
        """Status rows follow the aspired list, as TF Serving's manager does: a newly aspired
        version is listed as START at once (not only when its turn to load comes), and one
        dropped before it began loading goes to END. Caller holds the lock."""
        states = self._states.setdefault(name, {})
        loaded = self._loaded.get(name, {})
        for version in after - before - failed - set(loaded):
            status = states.get(version)
            if status is None or status.state == END:
                states[version] = VersionStatus(START)
        for version in before - after:
            status = states.get(version)
            if status is not None and status.state == START:
                states[version] = VersionStatus(END)

    # ----- the manager loop ----------------------------------------------------------------

    def _manage_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                action = self._next_action()
                if action is None:
                    self._changed.wait(timeout=0.5)
                    continue
            kind, name, version = action
            try:
                if kind == "unload":
                    self._unload(name, version)
                else:
                    self._load(name, version)
            except Exception:  # the manager thread must survive anything
                log.exception("Unexpected failure while trying to %s %s version %d",
                              kind, name, version)  # fmt: skip
                time.sleep(0.5)

    def _next_action(self) -> tuple[str, str, int] | None:
        """AvailabilityPreservingPolicy (core/availability_preserving_policy.cc): unload the
        lowest un-aspired version unless it is the last one serving while an aspired version
        is not ready yet; otherwise load the highest new aspired version."""
        for name, model in self._models.items():
            loaded = set(self._loaded.get(name, {}))
            aspired = model.aspired
            unaspired_ready = sorted(loaded - aspired)
            if unaspired_ready and (not aspired or loaded & aspired or len(unaspired_ready) > 1):
                return ("unload", name, unaspired_ready[0])
            new = sorted(aspired - loaded - model.failed, reverse=True)
            if new:
                return ("load", name, new[0])
        return None

    def _set_state(self, name: str, version: int, state: str, error: ServingError | None = None):
        with self._lock:
            self._states.setdefault(name, {})[version] = VersionStatus(state, error)
            self._changed.notify_all()

    def _publish_serving(self, name: str) -> None:
        """Rebuilds the request routing snapshot for `name` from the loaded versions."""
        snapshot = dict(self._serving)
        snapshot[name] = dict(self._loaded.get(name, {}))
        self._serving = snapshot

    def _still_aspired(self, name: str, version: int) -> bool:
        with self._lock:
            model = self._models.get(name)
            return model is not None and version in model.aspired

    def _load(self, name: str, version: int) -> None:
        with self._lock:
            path = self._models[name].folders.get(version)
        if path is None:  # the folder vanished between the poll and now
            return
        self._set_state(name, version, START)
        self._set_state(name, version, LOADING)
        self._note_load(name, version, f"version {version} is loading from {path}")
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        attempts = 1 + max(self._options.max_num_load_retries, 0)
        error: ServingError | None = None
        tried, cancelled = 0, False
        for attempt in range(attempts):
            if attempt:
                # core/loader_harness.cc: retries keep the state LOADING, and stop early when
                # the version is no longer aspired (CancelLoadServableRetry).
                if self._stopping.wait(self._options.load_retry_interval_seconds):
                    return
                if not self._still_aspired(name, version):
                    log.info("Version %d of %s no longer aspired; retries cancelled", version, name)
                    cancelled = True
                    break
                log.info(
                    "Retrying load of {name: %s version: %d} (attempt %d of %d)",
                    name, version, attempt + 1, attempts,
                )  # fmt: skip
            started = time.monotonic()
            tried += 1
            try:
                servable = self._loader(name, version, path)
            except ServingError as failure:
                error = failure
                self._note_failure(name, version, failure, attempt, attempts)
                continue
            with self._lock:  # one hold: a waiter never sees it routable but not AVAILABLE
                self._loaded.setdefault(name, {})[version] = servable
                self._publish_serving(name)
                # AVAILABLE only once routable (apis/get_model_status.proto), reference §2.
                self._set_state(name, version, AVAILABLE)
            log.info(
                "Successfully loaded servable version {name: %s version: %d} in %.2f s",
                name, version, time.monotonic() - started,
            )  # fmt: skip
            return
        self._give_up(name, version, error, tried, cancelled)

    def _note_failure(
        self, name: str, version: int, failure: ServingError, attempt: int, attempts: int
    ) -> None:
        """One failed attempt, in the log and in the note the version's status carries."""
        log.error(
            "Loading servable: {name: %s version: %d} failed: %s: %s",
            name, version, failure.code.name, failure.message,
        )  # fmt: skip
        cause = failure.message.splitlines()[0][:300] if failure.message else ""
        retry = (
            f"retry {attempt + 1} of {attempts - 1} in "
            f"{self._options.load_retry_interval_seconds:g} s"
            if attempt + 1 < attempts
            else "no retry left"
        )
        self._note_load(name, version, f"version {version} failed to load "
                        f"({failure.code.name}: {cause}); {retry}")  # fmt: skip

    def _give_up(
        self, name: str, version: int, error: ServingError | None, tried: int, cancelled: bool
    ) -> None:
        """END, with the last attempt's error; the log names the versions still served."""
        with self._lock:  # one hold: a waiter never sees it failed but not yet END
            self._models[name].failed.add(version)
            self._set_state(name, version, END, error)
            serving = sorted(self._loaded.get(name, {}))
        log.log(
            logging.INFO if cancelled else logging.ERROR,  # no longer wanted: not an error
            "Gave up loading servable {name: %s version: %d} after %d attempt(s); serving %s",
            name, version, tried,
            f"version(s) {', '.join(map(str, serving))}" if serving else "no version of it",
        )  # fmt: skip

    def _note_load(self, name: str, version: int, note: str) -> None:
        with self._lock:
            self._load_notes[(name, version)] = note

    def _unload(self, name: str, version: int) -> None:
        self._set_state(name, version, UNLOADING)
        with self._lock:
            servable = self._loaded[name].pop(version)
            self._publish_serving(name)
        servable.close()
        self._set_state(name, version, END)
        log.info("Unloaded servable version {name: %s version: %d}", name, version)

    # ----- request-side queries ------------------------------------------------------------

    def lookup(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request goes to: the highest AVAILABLE version unless a version or
        label is given (core/basic_manager.cc, server_core.cc; reference §2, §3.5)."""
        if label is not None:
            version = self._labels.get(name, {}).get(label)
            if version is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
        versions = self._serving.get(name) or {}
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        servable = versions.get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: int | None = None) -> list[tuple[int, VersionStatus]]:
        """Version states newest first; END entries are kept forever (reference §3.4)."""
        with self._lock:
            states = dict(self._states.get(name, {}))
        # A version asked for is looked up first, so an unknown model with a version gets the
        # per-version sentence, as get_model_status_impl.cc answers (reference §3.4).
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return sorted(states.items(), reverse=True)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._changed.notify_all()
            loaded = [s for versions in self._loaded.values() for s in versions.values()]
        for servable in loaded:
            servable.close()
