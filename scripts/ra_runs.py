"""Reading ra-train run files (HDF5), shared by compare_curves.py and ra-report.

A run file has root attributes (config as JSON, device, git revision, ...)
and tables /train, /val, /gates: one 1-D dataset per column and a "rows"
attribute, the run store's crash-safe row counter (data past it may be torn,
so only committed rows are read; files of killed runs read fine).

Needs h5py (Debian: python3-h5py; scripts/install-deps.sh installs it).
"""
import json
import os

# Config keys that describe the attention setup, the seed or the model
# preset: the axes of a sweep. Every other key is the base config, which
# the runs of one comparison must share.
SETUP_KEYS = {"attention", "ra_layers", "variant", "ra_variant", "window", "anneal_start", "anneal_end",
              "anneal_mode"}
SEED_KEYS = {"seed"}
MODEL_KEYS = {"model", "L", "H", "C", "T_max", "V", "Vp"}
# Device attributes: wall-clock is comparable only between runs that agree on all.
DEVICE_KEYS = ("kokkos_backend", "device_name", "compute_capability", "device_concurrency")


def import_h5py():
    try:
        import h5py
    except ImportError as e:
        raise SystemExit(f"{e}; install with: scripts/install-deps.sh (Debian python3-h5py)")
    return h5py


def committed(group, column):
    rows = int(group.attrs.get("rows", len(group[column])))
    return group[column][:rows]


def read_table(f, name):
    """{column: numpy array} of a table's committed rows ({} if absent)."""
    if name not in f:
        return {}
    g = f[name]
    out = {}
    for col in g:
        data = committed(g, col)
        if data.dtype.kind in "OS":  # HDF5 variable-length strings arrive as bytes
            data = [x.decode() if isinstance(x, bytes) else str(x) for x in data]
        out[col] = data
    return out


def label_of(config, path=None):
    """A short name of a run's attention setup from its config."""
    if not config:
        return os.path.basename(path) if path else "?"
    attn = config.get("attention", "?")
    if attn.startswith("ra_"):
        if config.get("ra_layers") not in ("", "all", None):
            attn += f" layers {config['ra_layers']}"
        if attn.startswith("ra_window") and config.get("window", -1) >= 0:
            attn += f" w={config['window']}"
        if config.get("anneal_start", -1) >= 0:
            attn += f" anneal {config['anneal_start']}-{config['anneal_end']}"
    return attn


class Run:
    """One run file, read whole into memory (they are small: a row a step)."""

    def __init__(self, path):
        h5py = import_h5py()
        self.path = path
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ValueError(f"cannot open {path}: {e}") from None
        with f:
            if "val" not in f:
                raise ValueError(f"{path} has no /val table (not an ra-train run file?)")
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            try:
                self.config = json.loads(self.attrs.get("config", ""))
            except ValueError:
                self.config = {}
            self.train = read_table(f, "train")
            self.val = read_table(f, "val")
            self.gates = read_table(f, "gates")
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.label = label_of(self.config, path)

    @property
    def device(self):
        """What the wall clock was measured on: backend, device, threads. A
        run resumed on other hardware (ra-train's session_devices attribute,
        one entry per session) gets the whole list as its device name, so it
        never compares by wall clock with a run of one device."""
        d = [str(self.attrs.get(k, "?")) for k in DEVICE_KEYS]
        sessions = [x for x in str(self.attrs.get("session_devices", "")).split(";") if x]
        if len(set(sessions)) > 1:
            d[1] = " then ".join(sessions)
        return tuple(d)

    @property
    def device_text(self):
        backend, name, cc, threads = self.device
        extra = f", compute capability {cc}" if cc not in ("n/a", "?", "") else f", {threads} threads"
        return f"{name} ({backend}{extra})"

    @property
    def seed(self):
        return self.config.get("seed")

    def base_config(self, also_free=()):
        """The config without the sweep's axes (and any keys in also_free)."""
        skip = SETUP_KEYS | SEED_KEYS | set(also_free)
        return {k: v for k, v in self.config.items() if k not in skip}

    def gate_layers(self):
        """{layer: {"step": [...], "w_std": [...], "w_rec": [...], "w_disc": [...]}}"""
        out = {}
        g = self.gates
        if not g or "layer" not in g:
            return out
        for i, layer in enumerate(g["layer"]):
            d = out.setdefault(int(layer), {"step": [], "w_std": [], "w_rec": [], "w_disc": [], "rec_scale": []})
            for k in d:
                if k in g:
                    d[k].append(float(g[k][i]))
        return out


def find_run_files(folder):
    """Run files of a folder (a sweep's runs/ subfolder if it has one),
    checkpoints left out."""
    runs = os.path.join(folder, "runs")
    if os.path.isdir(runs):
        folder = runs
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.endswith(".h5") and not n.endswith(".ckpt.h5") and not n.endswith(".tmp"))


# ---------------------------------------------------------------------------
# Any run file (ra-bench, ra-train, ...), for tools that compare files
# (scripts/ra-compare): the schema check, attributes, and the arrays that
# ra-bench --save-outputs writes under /outputs.

RUN_SCHEMA = "ra-kokkos-run/1"  # root attribute "schema" of every run file (core/run_store.hpp)


def text(value):
    """An HDF5 attribute value as str (variable-length strings arrive as bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def open_run_file(path):
    """An open, read-only h5py.File of a run file. ValueError naming the path
    and the reason if it is missing, not HDF5 (or locked by a live writer),
    or an HDF5 file without the run-store schema."""
    h5py = import_h5py()
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, not a run file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: cannot open as HDF5 ({e})") from None
    schema = text(f.attrs.get("schema", ""))
    if schema != RUN_SCHEMA:
        f.close()
        why = f"schema attribute {schema!r}" if schema else "no schema attribute"
        raise ValueError(f"{path}: not an ra-kokkos run file ({why}; expected {RUN_SCHEMA!r})")
    return f


def attributes(obj):
    """{name: value} of an HDF5 object's attributes, strings decoded."""
    return {k: (text(v) if isinstance(v, (bytes, str)) else v) for k, v in obj.attrs.items()}


def output_arrays(f):
    """{path: dataset} of every array under /outputs (ra-bench --save-outputs:
    outputs/<variant>/<dtype>/<shape>/<tensor>), sorted by path."""
    h5py = import_h5py()
    found = {}
    if "outputs" in f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found["outputs/" + name] = obj
        f["outputs"].visititems(visit)
    return dict(sorted(found.items()))


def read_array(dset):
    """A write_array dataset's values (float64, its shape), or None when its
    "length" attribute says the write was never committed (a writer killed
    in the middle of it)."""
    import numpy
    data = numpy.asarray(dset[()], dtype=numpy.float64)
    if int(dset.attrs.get("length", data.size)) < data.size:
        return None
    return data
