"""Typed, frozen specs: a resolved scene read once into one frozen dataclass
per section, for the builder and everything below it.

Each section's class is made from the section's schema (simulator.scene.sections),
so a key is declared once: its attributes are the section's keys, typed by
their field (Int → int, Float → float, Str → str, Bool → bool, Size → the size
as written, a list → a tuple, a table → a read-only mapping), and nested lists
and tables are frozen too. A section shared by kinds (the diffusion and train
[network], [stream], [run]) has one class. The network classes add what is
computed from their keys (``NetworkSpec.shape``: widths and activations;
``.graph``; ``.skeleton``: the graph's Model shapes).

``spec_of(resolved)`` gives the ``SceneSpec``: ``kind``, ``description`` and
one attribute per section (``spec.network.hidden``, ``spec.run.ticks``). The
resolved dict stays what run.json stores; the spec never goes to disk.
"""
import dataclasses
import functools
from typing import Mapping

import numpy as np

from ..model import Model
from .fields import Bool, Float, Int, Layers, ListOf, Size, Str, Table, Tuple, Window
from .sections import (AR_CONVERGE, AR_NETWORK, AR_TRAIN, GRAPH_NETWORK, LOCKING, PC_RUN,
                       PC_TABLE, PC_WAVE, RECORD, RENDER, RULE, RUN, SCHEMAS, SEED_DEVICE,
                       SEED_RUN, STREAM, SWEEP, TARGET, TRAIN, TRAIN_BATCHES)
from .validation import check_graph

# The Python type of each field type's values in a spec.
TYPES = {Int: int, Float: float, Str: str, Bool: bool, Size: int | str, ListOf: tuple,
         Tuple: tuple, Window: tuple, Table: Mapping, Layers: tuple}


class FrozenTable(dict):
    """A read-only dict (a table inside a spec); it pickles and copies, unlike
    a mappingproxy, so a spec can go to another process."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a scene spec is frozen; change the scene and read it again")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return FrozenTable, (dict(self),)


def frozen(value):
    """``value`` with every list made a tuple and every table a FrozenTable."""
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        return FrozenTable({k: frozen(v) for k, v in value.items()})
    return value


def thawed(value):
    """A plain copy of a frozen value: tuples as lists, mappings as dicts."""
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    return value


class Spec:
    """Base of every section spec: ``read`` makes one from a resolved section."""

    @classmethod
    def read(cls, section):
        return cls(**{f.name: frozen(section[f.name]) for f in dataclasses.fields(cls)})


class ChainOrGraph(Spec):
    """What NetworkSpec computes from its keys. [network] of a diffusion or
    train scene: a chain (sizes, or depth/width/inputs/outputs) or a graph
    (``layers`` with ``input_shape``)."""

    @property
    def graph(self):
        """Whether ``layers`` describe a graph (else the network is a chain)."""
        return bool(self.layers)

    @functools.cached_property
    def skeleton(self):
        """The graph's Model skeleton (shapes, no parameters), None for a chain."""
        if not self.graph:
            return None
        return check_graph({f.name: thawed(getattr(self, f.name))
                            for f in dataclasses.fields(self)}, "network")

    @property
    def run_skeleton(self):
        """The Model skeleton a run of this network ticks (shapes, no
        parameters): the graph's (levelled when it runs levelled) or the chain's
        dense layers; what budgets are sized from."""
        if not self.graph:
            sizes, acts = self.shape
            return Model.chain_skeleton(sizes, acts)
        return self.skeleton.level() if self.levelled else self.skeleton

    def layer_dicts(self):
        """The graph's layer tables as plain dicts (``Model.from_layers``'s input)."""
        return thawed(self.layers)

    @property
    def chain_sizes(self):
        """Widths of layers 0..L of a chain: ``sizes``, or inputs, depth−1 hidden
        layers of ``width`` and outputs."""
        if self.sizes:
            return list(self.sizes)
        return [self.inputs] + [self.width] * (self.depth - 1) + [self.outputs]

    @property
    def shape(self):
        """(sizes, activations): widths of layers 0..L and σ of layers 1..L
        (``hidden`` for 1..L−1, ``output`` for L). For a graph: the flat sizes
        of its input and output frames and ``output``, the shape of the teacher
        that maps one to the other."""
        if self.graph:
            skeleton = self.skeleton
            return ([int(np.prod(skeleton.input_shape)), int(np.prod(skeleton.output_shape))],
                    [self.output])
        sizes = self.chain_sizes
        return sizes, [self.hidden] * (len(sizes) - 2) + [self.output]


class RelaxationChain(ChainOrGraph):
    """What RelaxationNetworkSpec computes from its keys. [network] of an
    ar_converge or ar_train scene: a chain given by ``sizes``."""

    layers = ()
    graph = False
    skeleton = None


def spec_class(name, fields, base=Spec):
    """A frozen dataclass ``name`` with one typed attribute per key of ``fields``."""
    cls = dataclasses.make_dataclass(
        name, [(key, TYPES[type(field)]) for key, field in fields.items()], bases=(base,),
        frozen=True)
    cls.__module__ = __name__
    _BY_SCHEMA[id(fields)] = cls
    return cls


_BY_SCHEMA = {}
NetworkSpec = spec_class("NetworkSpec", GRAPH_NETWORK, ChainOrGraph)
StreamSpec = spec_class("StreamSpec", STREAM)
TargetSpec = spec_class("TargetSpec", TARGET)
RuleSpec = spec_class("RuleSpec", RULE)
RunSpec = spec_class("RunSpec", RUN)
RecordSpec = spec_class("RecordSpec", RECORD)
RenderSpec = spec_class("RenderSpec", RENDER)
TrainSpec = spec_class("TrainSpec", TRAIN)
RelaxationNetworkSpec = spec_class("RelaxationNetworkSpec", AR_NETWORK, RelaxationChain)
ConvergeSpec = spec_class("ConvergeSpec", AR_CONVERGE)
RelaxationTrainSpec = spec_class("RelaxationTrainSpec", AR_TRAIN)
BatchTrainSpec = spec_class("BatchTrainSpec", TRAIN_BATCHES)
SeedDeviceSpec = spec_class("SeedDeviceSpec", SEED_DEVICE)
TableSpec = spec_class("TableSpec", PC_TABLE)
WaveSpec = spec_class("WaveSpec", PC_WAVE)
SeedDtypeSpec = spec_class("SeedDtypeSpec", PC_RUN)
SeedSpec = spec_class("SeedSpec", SEED_RUN)
LockingSpec = spec_class("LockingSpec", LOCKING)
SweepSpec = spec_class("SweepSpec", SWEEP)


def section_class(kind, section):
    """The spec class of ``kind``'s ``section``."""
    return _BY_SCHEMA[id(SCHEMAS[kind][section])]


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """A resolved scene read into specs: ``kind``, ``description`` and
    ``sections`` ({name: spec}); each section is also an attribute."""

    kind: str
    description: str
    sections: Mapping

    def __getattr__(self, name):
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"a {self.__dict__.get('kind')} scene has no section {name!r}")


def spec_of(resolved):
    """The SceneSpec of a resolved scene (``validate``'s result), read once."""
    kind = resolved["kind"]
    return SceneSpec(kind, resolved["description"], FrozenTable(
        {name: section_class(kind, name).read(resolved[name]) for name in SCHEMAS[kind]}))
