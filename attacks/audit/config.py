"""The audit's configuration: a typed dataclass read from TOML (or a preset), checked up front.

Everything that can be refused is refused here, in one line, before any run starts: unknown
keys, attacks, denoisers or modes, numbers out of range, a canary share above 10 %, and (in
:func:`fedlab.attacks.audit.runner.resolve_settings`) an epsilon the app's sampling cannot reach.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fedlab.attacks.pgla.shipped import SHIPPED_DENOISERS  # the learned denoisers' defaults

from fedlab.errors import FedlabError
from fedlab.limits import SEED_LIMIT, check_int, short

MODES = ("none", "central", "local")
MAX_CANARY_SHARE = 0.1


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: ``mode`` and its ``epsilon`` (ignored for ``none``).

    ``central``: client-level epsilon the app's accountant must reach after the run's rounds
    (the noise multiplier is derived from it). ``local``: epsilon per release of each client.
    """

    mode: str
    epsilon: float = 0.0

    @property
    def name(self) -> str:
        return "no-dp" if self.mode == "none" else f"{self.mode}-eps{self.epsilon:g}"

    def overrides(self) -> dict[str, Any]:
        """Run-config keys of the ``dpfedavg`` family that realise this setting."""
        if self.mode == "none":
            return {"dp-mode": "none"}
        if self.mode == "central":
            return {
                "dp-mode": "central-server",
                "noise-multiplier": 0.0,
                "target-epsilon": self.epsilon,
            }
        return {"dp-mode": "local", "local-epsilon": self.epsilon}


@dataclass(frozen=True)
class AuditConfig:
    """What ``fedlab audit`` runs. Keys in TOML use dashes (``max-iterations``).

    Attributes
    ----------
    app : str
        App name or ``module:attr``; ``--app`` on the command line wins.
    run : dict
        Run-config keys of the app shared by every setting (rounds, dataset, model, ...).
    settings : list of Setting
    targets : int
        Traced clients attacked per setting (canaries are never targets).
    trace_round : int
        The round whose FedSGD replies are recorded and attacked.
    attacks, denoisers : tuple of str
        Registered names (``fedlab.attacks``, ``fedlab.denoisers``).
    denoiser_dirs : dict
        Folder of each learned denoiser; the shipped ones by default.
    max_iterations : int
        Per attack attempt; attacks also stop when their loss stops improving.
    patience : int
        Checks (every 50 iterations for ``ig``, 20 evaluations for ``dlg``/``idlg``) without a
        0.01 % improvement after which an attack stops.
    canary_share : float
        Canary clients as a share of the population, at most 0.1.
    null_canaries : int
        Directions never inserted (the null distribution).
    bootstrap : int
        Resamples of the canaries for the estimate's spread.
    workers : int
        Processes attacking targets in parallel, one thread each (0: in this process).
    seed : int
        Canary directions, attack starts, bootstrap.
    attack_aggregate : bool
        Under central DP, also attack the released (noised) aggregate of the traced round.
    """

    app: str = "dpfedavg"
    run: dict[str, Any] = field(default_factory=dict)
    settings: tuple[Setting, ...] = (Setting("none"),)
    targets: int = 2
    trace_round: int = 1
    attacks: tuple[str, ...] = ("idlg", "ig")
    denoisers: tuple[str, ...] = ("none",)
    denoiser_dirs: dict[str, str] = field(default_factory=dict)
    max_iterations: int = 1000
    patience: int = 3
    canary_share: float = 0.1
    null_canaries: int = 200
    bootstrap: int = 200
    workers: int = 2
    seed: int = 0
    attack_aggregate: bool = True

    def denoiser_dir(self, name: str) -> str | None:
        """The folder of a learned denoiser (None for classical ones)."""
        from fedlab.attacks.pgla.denoisers import NEEDS_FOLDER

        if name not in NEEDS_FOLDER:
            return None
        if name in self.denoiser_dirs:
            return self.denoiser_dirs[name]
        return str(SHIPPED_DENOISERS[name]) if name in SHIPPED_DENOISERS else None

    def validate(self) -> None:
        """Refuse, in one line, anything that would fail later."""
        from fedlab.registry import ATTACKS, DENOISERS

        for key, low, high in (
            ("targets", 0, 10_000),
            ("trace_round", 1, 10_000),
            ("max_iterations", 1, 10**9),
            ("patience", 1, 10**6),
            ("null_canaries", 10, 10**6),
            ("bootstrap", 10, 10**6),
            ("workers", 0, 1024),
            ("seed", 0, SEED_LIMIT - 1),
        ):
            check_int(getattr(self, key), f"audit: {key.replace('_', '-')}", low=low, high=high)
        if not isinstance(self.attack_aggregate, bool):
            raise FedlabError(
                f"audit: attack-aggregate must be true or false, got {short(self.attack_aggregate)}"
            )
        if not isinstance(self.app, str):
            raise FedlabError(f"audit: app must be a name or module:attr, got {short(self.app)}")
        for key in ("attacks", "denoisers"):
            if not all(isinstance(v, str) for v in getattr(self, key)):
                raise FedlabError(f"audit: {key} must be names, got {short(getattr(self, key))}")
        if not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.denoiser_dirs.items()
        ):
            raise FedlabError("audit: denoiser-dirs must map denoiser names to folder paths")

        for name in self.attacks:
            if name not in ATTACKS:
                raise FedlabError(
                    f"audit: unknown attack {name!r}; known: {', '.join(ATTACKS.names())}"
                )
        for name in self.denoisers:
            if name not in DENOISERS:
                raise FedlabError(
                    f"audit: unknown denoiser {name!r}; known: {', '.join(DENOISERS.names())}"
                )
            folder = self.denoiser_dir(name)
            from fedlab.attacks.pgla.denoisers import NEEDS_FOLDER

            if name in NEEDS_FOLDER and (folder is None or not Path(folder).is_dir()):
                raise FedlabError(
                    f"audit: denoiser {name!r} needs a folder; set denoiser-dirs."
                    f"{name} to one written by `fedlab pgla train` (got {folder!r})"
                )
        if not self.attacks:
            raise FedlabError("audit: attacks is empty; name at least one, e.g. attacks = ['idlg']")
        if not self.settings:
            raise FedlabError("audit: settings is empty; e.g. [[settings]] mode = 'none'")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise FedlabError(f"audit: settings repeat: {names}; give each mode/epsilon once")
        for s in self.settings:
            if s.mode not in MODES:
                raise FedlabError(f"audit: unknown mode {s.mode!r}; allowed: {', '.join(MODES)}")
            if s.mode != "none" and not (math.isfinite(s.epsilon) and s.epsilon > 0):
                raise FedlabError(
                    f"audit: mode {s.mode!r} needs a finite epsilon > 0, got "
                    f"{s.epsilon}; e.g. epsilon = 4"
                )
        share = self.canary_share
        if isinstance(share, bool) or not isinstance(share, int | float):
            raise FedlabError(f"audit: canary-share must be a number, got {short(share)}")
        if not (math.isfinite(share) and 0 < share <= MAX_CANARY_SHARE):
            raise FedlabError(
                f"audit: canary-share {self.canary_share} must lie in (0, {MAX_CANARY_SHARE}]: "
                "canaries are at most 10 % of the population (Andrew et al.); e.g. 0.1"
            )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = [{"mode": s.mode, "epsilon": s.epsilon} for s in self.settings]
        return out


def from_mapping(data: dict[str, Any]) -> AuditConfig:
    """An :class:`AuditConfig` from TOML-shaped data (dashed keys), validated."""
    allowed = {f.name for f in fields(AuditConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in allowed:
            raise FedlabError(
                f"audit config: unknown key {key!r}; known: "
                f"{', '.join(sorted(k.replace('_', '-') for k in allowed))}"
            )
        kwargs[name] = value
    if "settings" in kwargs:
        if not isinstance(kwargs["settings"], list | tuple):
            raise FedlabError("audit config: settings must be a list of [[settings]] tables")
        settings = []
        for item in kwargs["settings"]:
            if not isinstance(item, dict) or set(item) - {"mode", "epsilon"}:
                raise FedlabError(
                    f"audit config: a setting must be {{mode, epsilon}}, got {item!r}"
                )
            epsilon = item.get("epsilon", 0.0)
            try:
                if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
                    raise TypeError
                settings.append(Setting(str(item.get("mode", "")), float(epsilon)))
            except (TypeError, ValueError, OverflowError):
                raise FedlabError(
                    f"audit config: epsilon {short(epsilon)} of a setting is not a number"
                ) from None
        kwargs["settings"] = tuple(settings)
    for key in ("attacks", "denoisers"):
        if key in kwargs:
            if isinstance(kwargs[key], str):
                kwargs[key] = [v for v in kwargs[key].split(",") if v]
            if not isinstance(kwargs[key], list | tuple):
                raise FedlabError(f"audit config: {key} must be a list of names, e.g. ['idlg']")
            kwargs[key] = tuple(kwargs[key])
    for key in ("run", "denoiser_dirs"):
        if key in kwargs and not isinstance(kwargs[key], dict):
            raise FedlabError(f"audit config: {key.replace('_', '-')} must be a table")
    config = AuditConfig(**kwargs)
    config.validate()
    return config


def load(path: str | Path | None, preset: str | None) -> AuditConfig:
    """The preset (``default`` when neither is given), with a TOML file's keys on top."""
    from fedlab.attacks.audit.presets import PRESETS

    name = preset or ("default" if path is None else None)
    data: dict[str, Any] = {}
    if name is not None:
        if name not in PRESETS:
            raise FedlabError(f"audit: unknown preset {name!r}; known: {', '.join(PRESETS)}")
        data = {**PRESETS[name]}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FedlabError(f"audit config {str(file)!r} is not a file")
        try:
            extra = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise FedlabError(f"audit config {str(file)!r} is not valid TOML: {reason}") from None
        if not isinstance(extra.get("run", {}), dict):
            raise FedlabError(f"audit config {str(file)!r}: run must be a table ([run])")
        run = {**data.get("run", {}), **extra.pop("run", {})}
        data = {**data, **extra, "run": run}
    return from_mapping(data)
