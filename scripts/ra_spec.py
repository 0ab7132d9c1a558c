"""Experiment specs for ra-sweep: read a TOML spec, check it against
ra-train's own option list, and expand it into named runs.

Standard library only (tomllib, Python 3.11), so ra-sweep runs on a cluster
login node that has no h5py. The format, by example:

    [sweep]                       # about the sweep itself
    name = "seeds-plan"
    description = "..."
    out_dir = "runs/sweeps/seeds-plan"   # default output folder

    [base]                        # ra-train options every run shares
    model = "gpt2-124m"           # option names as in `ra-train --help`,
    batch = 8                     #   '-' or '_' alike; true for a flag
    time_budget = 3600            # budget: steps, time_budget and/or tokens
    checkpoint_every = 500        #   (tokens: ra-sweep converts to steps)

    [axes]                        # crossed with every setup
    seed = [1, 2, 3]
    model = ["gpt2-124m"]         # optional preset axis (named in run names)

    [[setup]]                     # one attention setup; list values expand
    attention = ["sdpa_fused", "sdpa_open", "ra_open", "ra_fused"]
    [[setup]]
    name = "hybrid"
    attention = "ra_fused"
    ra_layers = ["4-8"]
    [[setup]]
    attention = "ra_window"
    window = [64, 128]
    [[setup]]
    name = "anneal"
    attention = "ra_fused"
    anneal = {start = 0, end = "100%", mode = "rec"}   # steps, or % of the step budget
    options = {disc = "content"}  # other ra-train options for this setup only

Every mistake raises SpecError with a message naming the key and the file;
ra-sweep prints it and exits 2.
"""
import difflib
import itertools
import math
import os
import re
import subprocess
import tomllib

# What ra-sweep sets itself, per run: a spec may not set these in [base] or
# a setup's options.
OWNED = {
    "out": "ra-sweep names each run's file itself (<out_dir>/runs/<name>.h5)",
    "out-dir": "give the sweep's folder as [sweep] out_dir or ra-sweep --out-dir",
    "resume": "ra-sweep resumes interrupted runs itself",
    "seed": "seeds are the [axes] seed list",
    "attention": "the attention setup is a [[setup]] table",
    "ra-layers": "put ra_layers in a [[setup]] table",
    "window": "put window in a [[setup]] table",
    "anneal-start": "put anneal = {start, end, mode} in a [[setup]] table",
    "anneal-end": "put anneal = {start, end, mode} in a [[setup]] table",
    "anneal-mode": "put anneal = {start, end, mode} in a [[setup]] table",
    "anneal-floor": "put anneal = {start, end, floor} in a [[setup]] table",
    "help": "not a training option",
}
SWEEP_KEYS = {"name", "description", "out_dir"}
AXIS_KEYS = {"seed", "model"}
SETUP_KEYS = {"name", "attention", "ra_layers", "window", "anneal", "options"}
ANNEAL_KEYS = {"start", "end", "mode", "floor"}
TOP_KEYS = {"sweep", "base", "axes", "setup"}
# Budget keys of [base] beyond ra-train's own options.
SWEEP_BUDGET_KEYS = {"tokens"}


class SpecError(Exception):
    pass


# ---- ra-train's option list, from its --help (the one source of truth)

class TrainOptions:
    """Options ra-train accepts: name -> (type, allowed values or None)."""

    def __init__(self, options):
        self.options = options  # {"attention": ("TEXT", ["sdpa_open", ...]), "serial": ("FLAG", None), ...}

    @property
    def attentions(self):
        return self.options["attention"][1]

    @property
    def models(self):
        return self.options["model"][1]

    @classmethod
    def from_help(cls, text):
        options = {}
        for line in text.splitlines():
            # "  --attention TEXT:{sdpa_open,...}=sdpa_fused   help", "  --serial   help",
            # "  --no-attention-timing{false}", "  -h,--help ..."
            m = re.match(r"^\s+(?:-\w,)?--([a-z][a-z0-9-]*)(\{[^}]*\})?(?:\s+([A-Z]+)(?::(\{[^}]*\}))?)?", line)
            if not m:
                continue
            name, _, kind, choices = m.groups()
            if kind is None or kind not in ("INT", "UINT", "FLOAT", "TEXT"):
                kind = "FLAG"
            options[name] = (kind, choices[1:-1].split(",") if choices else None)
        for needed in ("attention", "model", "steps", "time-budget", "resume", "out"):
            if needed not in options:
                raise SpecError(f"could not read ra-train's options from its --help (no --{needed}); "
                                "is this ra-train binary current?")
        return cls(options)

    @classmethod
    def from_binary(cls, ra_train):
        try:
            out = subprocess.run([ra_train, "--help"], capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise SpecError(f"cannot run {ra_train} --help: {e}") from None
        if out.returncode != 0:
            raise SpecError(f"{ra_train} --help failed (exit {out.returncode}): {out.stderr.strip()[:300]}")
        return cls.from_help(out.stdout)


# ---- the spec

def _where(path, *keys):
    return f"{path}: " + ".".join(str(k) for k in keys) if keys else str(path)


def _option_value(path, keys, name, value, opts):
    """Checks one ra-train option's value against --help's type and choices;
    returns its command-line form (a list of arguments)."""
    kind, choices = opts.options[name]
    where = _where(path, *keys)
    if kind == "FLAG":
        if not isinstance(value, bool):
            raise SpecError(f"{where}: --{name} is a flag; give true or false, not {value!r}")
        return [f"--{name}"] if value else []
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise SpecError(f"{where}: --{name} takes one {kind.lower()} value, not {value!r}")
    if kind in ("INT", "UINT") and not isinstance(value, int):
        raise SpecError(f"{where}: --{name} takes an integer, not {value!r}")
    if kind == "UINT" and value < 0:
        raise SpecError(f"{where}: --{name} takes a non-negative integer, not {value}")
    if kind == "FLOAT" and not isinstance(value, (int, float)):
        raise SpecError(f"{where}: --{name} takes a number, not {value!r}")
    if kind == "TEXT" and not isinstance(value, str):
        raise SpecError(f"{where}: --{name} takes a string, not {value!r}")
    if choices is not None and str(value) not in choices:
        raise SpecError(f"{where}: unknown value {value!r} for --{name} (ra-train knows: {', '.join(choices)})")
    return [f"--{name}", _fmt(value)]


def _fmt(v):
    # repr keeps every digit of a float; ints stay ints.
    return repr(v) if isinstance(v, float) else str(v)


def _options(path, keys, table, opts, what):
    """A table of ra-train options -> {dashed name: value}, each checked."""
    if not isinstance(table, dict):
        raise SpecError(f"{_where(path, *keys)}: must be a table of ra-train options")
    out = {}
    for key, value in table.items():
        name = key.replace("_", "-")
        if name in OWNED:
            raise SpecError(f"{_where(path, *keys, key)}: not allowed in {what}: {OWNED[name]}")
        if what == "[base]" and key in SWEEP_BUDGET_KEYS:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise SpecError(f"{_where(path, *keys, key)}: a positive number of training tokens, not {value!r}")
            out[key] = value
            continue
        if name not in opts.options:
            known = [o for o in opts.options if o not in OWNED]
            close = [o for o in known if o.startswith(name)] or difflib.get_close_matches(name, known, 3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SpecError(f"{_where(path, *keys, key)}: unknown key: ra-train has no option --{name}{hint}")
        _option_value(path, keys + [key], name, value, opts)
        out[name] = value
    return out


def _table(path, keys, value, known, hint=""):
    """Checks that value is a table whose keys are all known."""
    if not isinstance(value, dict):
        raise SpecError(f"{_where(path, *keys)}: must be a table")
    for key in value:
        if key not in known:
            raise SpecError(f"{_where(path, *keys, key)}: unknown key (known: {', '.join(sorted(known))}{hint})")
    return value


def _values(path, keys, value, check=None):
    """A scalar or a non-empty list -> list of values (an axis)."""
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{_where(path, *keys)}: an axis with no values (give at least one)")
        values = value
    else:
        values = [value]
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"{_where(path, *keys)}: a value appears twice in {value!r}")
    if check:
        for v in values:
            check(v)
    return values


def load(path, opts, overrides=()):
    """Reads and checks the spec at path; returns the Spec. overrides:
    "key=value" strings that replace [base] keys (ra-sweep --set), the value
    read as TOML (a number, true, "text") or else as a plain string."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SpecError(f"cannot read spec {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    base = data.setdefault("base", {})
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SpecError(f"--set {item!r}: give KEY=VALUE, e.g. --set time_budget=600")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare path or name
        # The spec may spell the key with '-' or '_': replace it where it
        # stands (the command line keeps its order), else add it.
        spelled = [k for k in (key.replace("-", "_"), key.replace("_", "-")) if k in base]
        base[spelled[0] if spelled else key.replace("-", "_")] = value
    return Spec(path, data, opts)


class Run:
    def __init__(self, index, name, setup, model, seed, args):
        self.index, self.name, self.setup, self.model, self.seed, self.args = index, name, setup, model, seed, args

    def as_dict(self):
        return {"index": self.index, "name": self.name, "setup": self.setup, "model": self.model,
                "seed": self.seed, "args": self.args}


class Spec:
    def __init__(self, path, data, opts):
        self.path = path
        for key in data:
            if key not in TOP_KEYS:
                raise SpecError(f"{path}: unknown key [{key}] (known: {', '.join(sorted(TOP_KEYS))})")
        sweep = _table(path, ["sweep"], data.get("sweep", {}), SWEEP_KEYS)
        self.name = sweep.get("name") or os.path.splitext(os.path.basename(path))[0]
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise SpecError(f"{_where(path, 'sweep', 'name')}: use letters, digits, '.', '_' and '-' only, not {self.name!r}")
        self.description = sweep.get("description", "")
        self.out_dir = sweep.get("out_dir", os.path.join("runs", "sweeps", self.name))

        self.base = _options(path, ["base"], data.get("base", {}), opts, "[base]")
        if not any(k in self.base for k in ("steps", "time-budget", "tokens")):
            raise SpecError(f"{path}: [base] needs a budget: steps, time_budget (seconds) and/or tokens")
        self.steps = self.base.pop("steps", 0)
        tokens = self.base.pop("tokens", 0)
        if tokens:
            # ra-train counts steps; a token budget is steps of batch x context tokens.
            if "batch" not in self.base or "context" not in self.base:
                raise SpecError(f"{_where(path, 'base', 'tokens')}: a token budget needs batch and context in [base] "
                                "(tokens per step = batch x context)")
            per_step = self.base["batch"] * self.base["context"]
            from_tokens = math.ceil(tokens / per_step)
            self.steps = min(self.steps, from_tokens) if self.steps else from_tokens
        self.tokens = tokens

        axes = _table(path, ["axes"], data.get("axes", {}), AXIS_KEYS, "; the attention setups are [[setup]] tables")

        def check_seed(v):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"{_where(path, 'axes', 'seed')}: seeds are non-negative integers, not {v!r}")

        def check_model(v):
            if v not in opts.models:
                raise SpecError(f"{_where(path, 'axes', 'model')}: unknown model preset {v!r} "
                                f"(ra-train knows: {', '.join(opts.models)})")

        self.seeds = _values(path, ["axes", "seed"], axes.get("seed", [1337]), check_seed)
        self.model_axis = "model" in axes
        if self.model_axis and "model" in self.base:
            raise SpecError(f"{path}: model is both in [base] and an [axes] list; keep one")
        self.models = _values(path, ["axes", "model"], axes["model"], check_model) if self.model_axis \
            else [self.base.get("model")]

        setups = data.get("setup")
        if setups is None:
            raise SpecError(f"{path}: no [[setup]] tables: name at least one attention setup")
        if not isinstance(setups, list) or not setups:
            raise SpecError(f"{path}: setup must be a non-empty array of tables ([[setup]])")
        self.setups = []
        for i, s in enumerate(setups):
            self.setups += self._expand_setup(path, i, s, opts)
        names = [s["name"] for s in self.setups]
        for n in names:
            if names.count(n) > 1:
                raise SpecError(f"{path}: two setups are both named {n!r}; give them different names")

        # Seed-major order: a sweep cut short locally still holds whole
        # comparisons (every setup of the first seeds), not a few setups.
        self.runs = []
        for seed in self.seeds:
            for model in self.models:
                for setup in self.setups:
                    name = setup["name"] + (f"-{model}" if self.model_axis else "") + f"-s{seed}"
                    args = self._args(setup, model, seed)
                    self.runs.append(Run(len(self.runs), name, setup["name"], model, seed, args))

    def _expand_setup(self, path, i, s, opts):
        keys = ["setup", i]
        _table(path, keys, s, SETUP_KEYS, "; other ra-train options go in options = {...}")
        if "attention" not in s:
            raise SpecError(f"{_where(path, *keys)}: needs attention = one of {', '.join(opts.attentions)}")

        def check_attention(v):
            if v not in opts.attentions:
                raise SpecError(f"{_where(path, *keys, 'attention')}: unknown attention {v!r} "
                                f"(ra-train knows: {', '.join(opts.attentions)})")

        def check_layers(v):
            if not isinstance(v, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", v):
                raise SpecError(f"{_where(path, *keys, 'ra_layers')}: a layer list like \"4-8\" or \"0,2,5-7\", not {v!r}")

        def check_window(v):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"{_where(path, *keys, 'window')}: a window is a non-negative integer (tokens), not {v!r}")

        def check_anneal(v):
            _table(path, keys + ["anneal"], v, ANNEAL_KEYS)
            if "start" not in v or "end" not in v:
                raise SpecError(f"{_where(path, *keys, 'anneal')}: needs start and end (steps, or \"N%\" of the step budget)")
            if "mode" in v and v["mode"] not in opts.options["anneal-mode"][1]:
                raise SpecError(f"{_where(path, *keys, 'anneal', 'mode')}: unknown mode {v['mode']!r} "
                                f"(ra-train knows: {', '.join(opts.options['anneal-mode'][1])})")
            if self._anneal_steps(path, keys, v["start"]) >= self._anneal_steps(path, keys, v["end"]):
                raise SpecError(f"{_where(path, *keys, 'anneal')}: end must come after start")
            floor = v.get("floor", 0)
            if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor < 1:
                raise SpecError(f"{_where(path, *keys, 'anneal', 'floor')}: the lowest scale is a number in [0, 1), "
                                f"not {floor!r}")

        axes = {
            "attention": _values(path, keys + ["attention"], s["attention"], check_attention),
            "ra_layers": _values(path, keys + ["ra_layers"], s["ra_layers"], check_layers) if "ra_layers" in s else [None],
            "window": _values(path, keys + ["window"], s["window"], check_window) if "window" in s else [None],
            "anneal": _values(path, keys + ["anneal"], s["anneal"], check_anneal) if "anneal" in s else [None],
        }
        options = _options(path, keys + ["options"], s.get("options", {}), opts, "a setup's options")
        given = s.get("name")
        if given is not None and not (isinstance(given, str) and re.fullmatch(r"[A-Za-z0-9._-]+", given)):
            raise SpecError(f"{_where(path, *keys, 'name')}: use letters, digits, '.', '_' and '-' only, not {given!r}")
        out = []
        for attention, layers, window, anneal in itertools.product(*axes.values()):
            if layers is not None and not attention.startswith("ra_"):
                raise SpecError(f"{_where(path, *keys, 'ra_layers')}: ra_layers needs an RA attention, not {attention}")
            if window is not None and attention != "ra_window":
                raise SpecError(f"{_where(path, *keys, 'window')}: window is ra_window's option, not {attention}'s")
            if attention == "ra_window" and window is None:
                raise SpecError(f"{_where(path, *keys)}: ra_window needs window = <tokens> (or a list of widths)")
            # The name: the given one, or the attention; plus the values of
            # every key that varies within this setup (or always, unnamed).
            parts = [given] if given else []
            if not given or len(axes["attention"]) > 1:
                parts.append(attention)
            if layers is not None and (not given or len(axes["ra_layers"]) > 1):
                parts.append("L" + layers.replace(",", "_"))
            if window is not None and (not given or len(axes["window"]) > 1):
                parts.append(f"w{window}")
            if anneal is not None and (not given or len(axes["anneal"]) > 1):
                parts.append("anneal" + "-".join(str(anneal[k]).replace("%", "pct") for k in ("start", "end"))
                             + (f"-{anneal['mode']}" if "mode" in anneal else "")
                             + (f"-floor{anneal['floor']}" if anneal.get("floor") else ""))
            out.append({"name": "-".join(parts), "attention": attention, "ra_layers": layers, "window": window,
                        "anneal": anneal, "options": options})
        return out

    def _anneal_steps(self, path, keys, v):
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, str) and re.fullmatch(r"\d+(\.\d+)?%", v):
            if not self.steps:
                raise SpecError(f"{_where(path, *keys, 'anneal')}: {v!r} is a share of the step budget, but [base] "
                                "gives none (steps or tokens); use steps, e.g. start = 0, end = 20000")
            return round(self.steps * float(v[:-1]) / 100)
        raise SpecError(f"{_where(path, *keys, 'anneal')}: start/end are steps (>= 0) or \"N%\" of the step budget, not {v!r}")

    def _args(self, setup, model, seed):
        args = []
        base = dict(self.base)
        if model is not None:
            base["model"] = model
        base.update(setup["options"])
        if self.steps:
            base["steps"] = self.steps
        for name, value in base.items():
            if isinstance(value, bool):  # a flag (checked against --help in _options)
                args += [f"--{name}"] if value else []
            else:
                args += [f"--{name}", _fmt(value)]
        args += ["--attention", setup["attention"]]
        if setup["ra_layers"] is not None:
            args += ["--ra-layers", setup["ra_layers"]]
        if setup["window"] is not None:
            args += ["--window", str(setup["window"])]
        if setup["anneal"] is not None:
            a = setup["anneal"]
            args += ["--anneal-start", str(self._anneal_steps(self.path, [], a["start"])),
                     "--anneal-end", str(self._anneal_steps(self.path, [], a["end"]))]
            if "mode" in a:
                args += ["--anneal-mode", a["mode"]]
            if a.get("floor"):
                args += ["--anneal-floor", _fmt(a["floor"])]
        args += ["--seed", str(seed)]
        # Data paths relative to where ra-sweep runs, made absolute so a Slurm
        # task (or a later resume) finds the same shards from anywhere.
        for i in range(len(args) - 1):
            if args[i] in ("--train", "--val") and not os.path.isabs(args[i + 1]):
                args[i + 1] = os.path.abspath(args[i + 1])
        return args

    def plan(self):
        """What the expansion gave, as JSON-able data (ra-sweep writes it to
        the sweep folder; ra-report reads setup names and options from it)."""
        return {"format": "ra-sweep-plan/1", "name": self.name, "description": self.description,
                "spec": os.path.abspath(self.path),
                "base": self.base, "steps": self.steps, "tokens": self.tokens,
                "seeds": self.seeds, "models": self.models,
                "setups": [{k: v for k, v in s.items()} for s in self.setups],
                "runs": [r.as_dict() for r in self.runs]}
