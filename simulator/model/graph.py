"""Model: a directed acyclic graph of layer vertices over one input. Vertex 0 is the
input ("input"), the others layers in topological order, the output (the last layer
listed, which every layer must reach) last. Parameters are host float64 arrays keyed
"<layer>.W"/"<layer>.b". On the tick engine frame s first reaches v at tick s + levels()[v].
"""
import math
from dataclasses import dataclass

import numpy as np

from ..arguments import check_int, check_number, check_seed, fail
from ..backend import rng
from ..errors import MissingKeyError, SimulatorError
from . import nir_import, torch_import
from .layers import ACTIVATIONS, KINDS, Layer, Unfit
from .spec import INPUT, LayerError, check_input_shape, denormalize, normalize


IDENTITY_PREFIX = "_id_"        # the identity vertices Model.level inserts


def delay_names(names, edges):
    """``names`` with each of levelling's identity vertices named as a delay of its
    source, the first vertex up its chain of identities that is not one ("h +1 tick",
    "h +2 ticks"); without edges to follow, from its own name ("+3 ticks before q")."""
    parent = {int(c): int(p) for p, c in edges}
    out = []
    for v, name in enumerate(names):
        u, hops = v, 0
        while names[u].startswith(IDENTITY_PREFIX) and u in parent and hops < len(names):
            u, hops = parent[u], hops + 1
        if not name.startswith(IDENTITY_PREFIX):
            out.append(name)
        elif hops and not names[u].startswith(IDENTITY_PREFIX):
            out.append(f"{names[u]} +{hops} tick" + "s" * (hops > 1))
        else:                   # _id_<child>_<k>_<step>: step 0 is one tick after the source
            child, _, step = name[len(IDENTITY_PREFIX):].rstrip("_").rpartition("_")
            child = child.rpartition("_")[0] or child
            k = int(step) + 1 if step.isdigit() else "?"
            out.append(f"+{k} tick{'s' * (k != 1)} before {child}")
    return out


@dataclass(frozen=True, eq=False)
class Vertex:
    """One vertex: ``parents`` are indices in ``from`` order (may repeat),
    ``shape`` excludes the batch axis, ``layer`` is None for the input and
    ``cfg`` is the normalized layer dict."""
    index: int
    name: str
    kind: str
    parents: tuple
    shape: tuple
    layer: Layer | None = None
    cfg: dict | None = None

    @property
    def param_names(self):
        """Short names of its parameters ("W", "b"), in key order."""
        return tuple(self.layer.param_shapes) if self.layer else ()


class Model:
    """A graph of layers with its parameters; build it with ``from_layers``,
    ``chain``, ``from_weights`` or ``level``. Immutable: ``with_parameters`` returns a copy.
    ``import_report`` (list of str) says what an importer folded; copies carry it."""

    def __init__(self, input_shape, vertices, params, import_report=()):
        self.input_shape = tuple(input_shape)
        self.vertices = tuple(vertices)
        self._params = params
        self._index = {v.name: v.index for v in self.vertices}
        self.import_report = list(import_report)

    # ---------------------------------------------------------------- building
    @classmethod
    def from_layers(cls, layers, input_shape, seed=0):
        """A model from a list of layer dicts (a scene's TOML) and the input shape
        (batch excluded). From the seeded Generator in list order, all weights,
        then all biases: W ~ N(0, scale²/fan_in), b ~ N(0, bias_scale²) or zeros
        when bias_scale = 0 (so a dense chain gets ``Model.chain``'s weights)."""
        check_seed("Model.from_layers", seed)
        input_shape, cfgs = _configs(layers, input_shape)
        shell = cls._assemble(cfgs, input_shape)
        g, drawn = rng(seed), {}
        layers = [(c["name"], shell.vertex(c["name"]).layer, c) for c in cfgs]
        for name, layer, c in layers:
            if "W" in layer.param_shapes:
                drawn[f"{name}.W"] = g.normal(0.0, c.get("scale", 1.0) / math.sqrt(layer.fan_in()),
                                              layer.param_shapes["W"])
        for name, layer, c in layers:
            if "b" in layer.param_shapes:
                n, scale = layer.param_shapes["b"], c.get("bias_scale", 0.0)
                drawn[f"{name}.b"] = g.normal(0.0, scale, n) if scale else np.zeros(n)
        params = {k: drawn[k] for k in shell.param_shapes()}
        return Model(input_shape, shell.vertices, params)

    @classmethod
    def skeleton(cls, layers, input_shape):
        """The model ``from_layers`` would build (checked alike) without
        parameters: shapes only, to size a run before allocating it."""
        return cls._assemble(*reversed(_configs(layers, input_shape)))

    def param_shapes(self):
        """{"<layer>.W": shape, ...} in ``parameters()`` order (a skeleton has them too)."""
        return {f"{v.name}.{p}": tuple(v.layer.param_shapes[p])
                for v in self.vertices[1:] for p in v.param_names}

    @classmethod
    def _assemble(cls, cfgs, input_shape, params=None):
        """The Model of normalized configs (declaration order, the output last),
        checked: names, parents, cycles, arities, shapes, reaching the output."""
        declared = {}
        for i, c in enumerate(cfgs):
            if c["name"] in declared:
                raise LayerError(i, c["name"], "name", "a name no other layer has", c["name"])
            declared[c["name"]] = i
        known = [INPUT] + list(declared)
        for i, c in enumerate(cfgs):
            for p in c["from"]:
                if p not in declared and p != INPUT:
                    raise LayerError(i, c["name"], "from",
                                     f"'input' or a layer name ({', '.join(known[1:])})", p, known)
                if p == c["name"]:
                    raise LayerError(i, c["name"], "from", "a layer other than itself", p)
            arity = KINDS[c["kind"]].arity
            n = len(c["from"])
            if (arity is None and n < 2) or (arity is not None and n != arity):
                want = "two or more parents" if arity is None else "exactly one parent"
                raise LayerError(i, c["name"], "from", f"{want} for kind {c['kind']!r}",
                                 list(c["from"]))
        order = _topological(cfgs, declared)
        vertices = [Vertex(0, INPUT, INPUT, (), input_shape)]
        index = {INPUT: 0}
        for i in order:
            c = cfgs[i]
            parents = tuple(index[p] for p in c["from"])
            try:
                layer = KINDS[c["kind"]](c, [vertices[p].shape for p in parents])
            except Unfit as exc:
                raise LayerError(i, c["name"], *exc.args) from None
            index[c["name"]] = len(vertices)
            vertices.append(Vertex(len(vertices), c["name"], c["kind"], parents, layer.shape,
                                   layer, c))
        _check_reaches_output(cfgs, vertices, index)
        return Model(input_shape, vertices, params or {})

    @classmethod
    def from_weights(cls, weights, biases=None, activations="tanh"):
        """The dense chain of these arrays: layer l (1..L) is named str(l), with
        "l.W" = weights[l-1] (n_l x n_{l-1}), "l.b" = biases[l-1] (default zeros)
        and σ ``activations[l-1]`` (or one name for all); float64 copies."""
        call = "Model.from_weights"
        weights = _float_arrays(call, "weights", weights)
        if not weights:
            raise SimulatorError(f"{call}: a chain needs at least one weight matrix (L >= 1)")
        for i, w in enumerate(weights):
            if w.ndim != 2:
                raise SimulatorError(f"{call}: weights[{i}] must be 2-D, got shape {w.shape}")
            if i and w.shape[1] != weights[i - 1].shape[0]:
                raise SimulatorError(f"{call}: weights[{i}] has {w.shape[1]} columns but layer "
                                     f"{i} has {weights[i - 1].shape[0]} neurons")
        if biases is None:
            biases = [np.zeros(w.shape[0]) for w in weights]
        biases = [b.reshape(-1) for b in _float_arrays(call, "biases", biases)]
        if len(biases) != len(weights) or any(
                b.shape[0] != w.shape[0] for b, w in zip(biases, weights)):
            raise SimulatorError(f"{call}: biases must be one vector of n_l entries per "
                                 "weight matrix")
        if isinstance(activations, str):
            activations = [activations] * len(weights)
        if not isinstance(activations, (list, tuple)) or len(activations) != len(weights) or any(
                not isinstance(a, str) or a not in ACTIVATIONS for a in activations):
            fail(call, "activations", f"a name ({', '.join(ACTIVATIONS)}) or a list of "
                 f"{len(weights)}, one per layer", activations)
        cfgs = _chain_configs([int(w.shape[0]) for w in weights], activations)
        params = {f"{l}.{k}": a for l, (w, b) in enumerate(zip(weights, biases), 1)
                  for k, a in (("W", w), ("b", b))}
        return cls._assemble(cfgs, (int(weights[0].shape[1]),), params)

    @classmethod
    def chain_skeleton(cls, sizes, activations):
        """``chain(sizes, activations)`` without parameters (as ``skeleton``);
        ``activations``: one name per layer 1..L."""
        return cls._assemble(_chain_configs([int(n) for n in sizes[1:]], list(activations)),
                             (int(sizes[0]),))

    @classmethod
    def chain(cls, sizes, activations="tanh", seed=0, scale=1.0, bias_scale=0.0):
        """A dense chain of widths ``sizes`` (layers 0..L, layer l named str(l))
        with σ ``activations`` (one name, or one per layer 1..L), drawn as
        ``from_layers`` draws the same dense layers."""
        call = "Model.chain"
        if not isinstance(sizes, (list, tuple, np.ndarray)) or len(sizes) < 2:
            fail(call, "sizes", "a list of at least two widths (layers 0..L)", sizes)
        sizes = [check_int(call, f"sizes[{i}]", n, 1) for i, n in enumerate(sizes)]
        check_seed(call, seed)
        scale = check_number(call, "scale", scale, 0.0)
        bias_scale = check_number(call, "bias_scale", bias_scale, 0.0)
        g = rng(seed)
        weights = [g.normal(0.0, scale / np.sqrt(n_in), (n_out, n_in))
                   for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        biases = [g.normal(0.0, bias_scale, n_out) if bias_scale else np.zeros(n_out)
                  for n_out in sizes[1:]]
        return cls.from_weights(weights, biases, activations)

    @classmethod
    def from_torch(cls, module, example_input):
        """The Model a torch ``nn.Module`` computes on ``example_input``'s shape
        (docs/torch_import.md); ``model.import_report`` says what was folded."""
        return torch_import.from_torch(cls, module, example_input)

    def to_torch(self):
        """A torch ``nn.Module`` computing this model with its float64 parameters."""
        return torch_import.to_torch(self)

    @classmethod
    def from_nir(cls, graph):
        """The Model of a NIR graph (a ``nir.NIRGraph`` or a file ``nir.read`` reads)."""
        return nir_import.from_nir(cls, graph)

    def to_nir(self):
        """This model as a ``nir.NIRGraph`` (linear layers, average pools, sums)."""
        return nir_import.to_nir(self)

    def to_layers(self):
        """TOML-ready layer dicts (every field explicit) that ``from_layers``
        rebuilds this structure from."""
        return [denormalize(v.cfg) for v in self.vertices[1:]]

    # -------------------------------------------------------------- parameters
    def parameters(self):
        """{"<layer>.W": W, "<layer>.b": b}: float64 copies in topological order."""
        return {k: a.copy() for k, a in self._params.items()}

    def param_keys(self):
        """The keys of ``parameters()``, in order."""
        return list(self._params)

    def with_parameters(self, params):
        """A copy with ``params`` (keys and shapes of ``parameters()``) as float64."""
        call = "Model.with_parameters"
        want = self.param_keys()
        if not isinstance(params, dict):
            fail(call, "params", "a dict {'<layer>.W': array, ...} keyed like "
                 "model.parameters()", params)
        if set(params) != set(want):
            missing = sorted(set(want) - set(params))
            extra = sorted(map(str, set(params) - set(want)))
            raise SimulatorError(f"{call}: params: missing {missing}, unexpected {extra}")
        new = {}
        for k in want:
            try:
                a = np.array(params[k], dtype=np.float64)
            except (TypeError, ValueError):
                fail(call, f"params[{k!r}]", f"numbers of shape {self._params[k].shape}",
                     params[k])
            if a.shape != self._params[k].shape:
                raise SimulatorError(f"{call}: params[{k!r}]: expected shape "
                                     f"{self._params[k].shape}, got {a.shape}")
            new[k] = a
        return Model(self.input_shape, self.vertices, new, self.import_report)

    # ------------------------------------------------------------------- graph
    def __len__(self):
        return len(self.vertices)

    def __repr__(self):
        kinds = ", ".join(f"{v.name}:{v.kind}" for v in self.vertices[1:])
        return f"Model(input_shape={self.input_shape}, {kinds})"

    @property
    def names(self):
        """Vertex names in topological order ("input" first, the output last)."""
        return [v.name for v in self.vertices]

    @property
    def output(self):
        """Index of the output vertex (the last one)."""
        return len(self.vertices) - 1

    @property
    def output_shape(self):
        return self.vertices[-1].shape

    def vertex(self, name):
        """The Vertex called ``name``."""
        if not isinstance(name, str) or name not in self._index:
            raise MissingKeyError(f"model has no vertex {name!r}; expected one of "
                                  f"{', '.join(self.names)}")
        return self.vertices[self._index[name]]

    def parents(self, name):
        """Names of the parents of ``name``, in ``from`` order."""
        return tuple(self.vertices[p].name for p in self.vertex(name).parents)

    def children(self, name):
        """Names of the vertices with ``name`` among their parents (each once, in order)."""
        i = self.vertex(name).index
        return tuple(v.name for v in self.vertices if i in v.parents)

    def edges(self):
        """Every edge as (parent index, child index, position in the child's ``from``)."""
        return [(p, v.index, k) for v in self.vertices for k, p in enumerate(v.parents)]

    def levels(self):
        """{name: longest path length from the input} (the input is 0)."""
        lv = []
        for v in self.vertices:
            lv.append(1 + max(lv[p] for p in v.parents) if v.parents else 0)
        return {v.name: n for v, n in zip(self.vertices, lv)}

    @property
    def depth(self):
        """The longest path from the input to the output (L for a chain)."""
        return self.levels()[self.vertices[-1].name]

    def is_levelled(self):
        """True when every edge joins consecutive levels (one path length per vertex)."""
        lv = list(self.levels().values())
        return all(lv[c] == lv[p] + 1 for p, c, _ in self.edges())

    def level(self):
        """A levelled copy (Algorithm 2 of Salvatori et al. 2022): each edge p → v spanning
        g + 1 > 1 levels becomes a chain of g identities "_id_<v>_<k>_<step>"
        (k: p's position in v's ``from``, step 0 nearest p); values, parameters
        and gradients are unchanged."""
        lv = self.levels()
        taken = set(self.names)
        cfgs = []
        for v in self.vertices[1:]:
            parents = []
            for k, p in enumerate(self.parents(v.name)):
                for step in range(lv[v.name] - lv[p] - 1):
                    name = f"{IDENTITY_PREFIX}{v.name}_{k}_{step}"
                    while name in taken:
                        name += "_"
                    taken.add(name)
                    cfgs.append({"name": name, "kind": "identity", "from": (p,)})
                    p = name
                parents.append(p)
            cfgs.append({**v.cfg, "from": tuple(parents)})
        levelled = Model._assemble(cfgs, self.input_shape, self.parameters())
        return Model(levelled.input_shape, levelled.vertices, levelled._params,
                     self.import_report)


def _float_arrays(call, name, values):
    """float64 copies of ``values`` (one per layer); a SimulatorError names a bad entry."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        fail(call, name, "a list of arrays, one per layer", values)
    out = []
    for i, v in enumerate(values):
        try:
            out.append(np.array(v, dtype=np.float64))
        except (TypeError, ValueError):
            fail(call, f"{name}[{i}]", "an array of numbers", v)
    return out


def _chain_configs(units, activations):
    """Dense configs of a chain: layer l (1..L) named str(l), on layer l − 1."""
    return [{"name": str(l + 1), "kind": "dense", "from": (INPUT if l == 0 else str(l),),
             "units": n, "activation": a, "scale": 1.0, "bias_scale": 0.0}
            for l, (n, a) in enumerate(zip(units, activations))]


def _configs(layers, input_shape):
    """(input shape, normalized layer configs in declaration order), checked."""
    input_shape = check_input_shape(input_shape)
    if not isinstance(layers, (list, tuple)) or not layers:
        raise LayerError(None, None, "layers", "a non-empty list of layer tables", layers)
    cfgs, previous = [], INPUT
    for i, raw in enumerate(layers):
        cfgs.append(normalize(i, raw, previous))
        previous = cfgs[-1]["name"]
    return input_shape, cfgs


def _topological(cfgs, declared):
    """Declaration indices in topological order (earliest declared ready layer
    first); a cycle is one LayerError naming its layers."""
    placed, order = {INPUT}, []
    pending = list(range(len(cfgs)))
    while pending:
        for pos, i in enumerate(pending):
            if all(p in placed for p in cfgs[i]["from"]):
                order.append(i)
                placed.add(cfgs[i]["name"])
                del pending[pos]
                break
        else:
            i, seen = pending[0], []
            while i not in seen:  # walk unplaced parents until one repeats
                seen.append(i)
                i = next(declared[p] for p in cfgs[i]["from"] if p not in placed)
            cycle = [cfgs[j]["name"] for j in reversed(seen[seen.index(i):])]
            cycle.append(cycle[0])  # in data-flow order: parent -> child
            raise LayerError(i, cfgs[i]["name"], "from",
                             f"a graph without cycles (cycle {' -> '.join(cycle)})",
                             list(cfgs[i]["from"]))
    return order


def _check_reaches_output(cfgs, vertices, index):
    """Every layer must feed the output (the last declared layer)."""
    alive = {index[cfgs[-1]["name"]]}
    for v in reversed(vertices):
        if v.index in alive:
            alive.update(v.parents)
    for i, c in enumerate(cfgs):
        if index[c["name"]] not in alive:
            raise LayerError(i, c["name"], "name",
                             f"a layer on a path to the output {cfgs[-1]['name']!r} "
                             "(the last layer is the output)", c["name"])
