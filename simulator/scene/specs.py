"""Typed, frozen specs: ``spec_of`` reads a resolved scene (what run.json stores) once into
one frozen dataclass per section, made from its schema (lists as tuples, tables read-only);
the network classes add ``shape``, ``graph``, ``skeleton``."""
import dataclasses
import functools
from typing import Mapping

import numpy as np

from ..model import Model
from ..options import resolve_delay, resolve_levelled
from .fields import (Bool, FilePath, Float, Int, KeyedTable, Layers, ListOf, OrWord, Size, Str,
                     Table, Tuple, Window)
from .sections import (AR_CONVERGE, AR_NETWORK, AR_TRAIN, GRAPH_NETWORK, LOCKING, PC_RUN,
                       PC_TABLE, PC_WAVE, RECORD, RENDER, RULE, RUN, SCHEDULE_RULE, SCHEDULES,
                       SCHEMAS, SEED_DEVICE, SEED_RUN, STREAM, SWEEP, TARGET, THREADS_RUN, TRAIN,
                       TRAIN_BATCHES)
from .validation import check_graph

# The Python type of each field type's values in a spec.
TYPES = {Int: int, Float: float, Str: str, Bool: bool, Size: int | str, ListOf: tuple,
         Tuple: tuple, Window: tuple, Table: Mapping, Layers: tuple, OrWord: int | str,
         KeyedTable: Mapping, FilePath: str}


class FrozenTable(dict):
    """A read-only dict that pickles (unlike a mappingproxy): a spec can go to
    another process."""

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


class ChainOrGraph:
    """What a diffusion or train [network] computes from its keys: a chain
    (sizes, or depth/width/inputs/outputs) or a graph (``layers``, ``input_shape``)."""

    @property
    def graph(self):
        return bool(self.layers)

    @functools.cached_property
    def skeleton(self):
        """The graph's Model skeleton (shapes, no parameters), None for a chain."""
        if not self.graph:
            return None
        return check_graph({f.name: thawed(getattr(self, f.name))
                            for f in dataclasses.fields(self)}, "network")

    def run_skeleton(self, levelled):
        """The skeleton a run ticks (``levelled``: SceneSpec.levelled), budgets' measure."""
        if not self.graph:
            sizes, acts = self.shape
            return Model.chain_skeleton(sizes, acts)
        return self.skeleton.level() if levelled else self.skeleton

    @property
    def output_level(self):
        """D, the output's level (L for a chain): the causal supervision delay."""
        return self.skeleton.depth if self.graph else len(self.shape[0]) - 1

    def layer_dicts(self):
        """The graph's layer tables as plain dicts (``Model.from_layers``'s input)."""
        return thawed(self.layers)

    @property
    def shape(self):
        """(sizes, activations) of a chain: widths of layers 0..L and σ of 1..L; of a
        graph: the flat input and output sizes and ``output`` (its teacher's shape)."""
        if self.graph:
            shapes = (self.skeleton.input_shape, self.skeleton.output_shape)
            return [int(np.prod(s)) for s in shapes], [self.output]
        sizes = list(self.sizes) or ([self.inputs] + [self.width] * (self.depth - 1)
                                     + [self.outputs])
        return sizes, [self.hidden] * (len(sizes) - 2) + [self.output]


class RelaxationChain(ChainOrGraph):
    """[network] of an ar_converge or ar_train scene: a chain given by ``sizes``."""

    layers = ()


def spec_class(name, fields, base=object):
    """A frozen dataclass ``name`` with one typed attribute per key of ``fields``."""
    cls = dataclasses.make_dataclass(
        name, [(key, TYPES[type(field)]) for key, field in fields.items()], bases=(base,),
        frozen=True)
    cls.__module__ = __name__
    return cls


# One class per schema (a section shared by kinds has one), a module attribute by its name.
_BY_SCHEMA = {id(fields): spec_class(name, fields, *base) for name, fields, *base in (
    ("NetworkSpec", GRAPH_NETWORK, ChainOrGraph), ("StreamSpec", STREAM),
    ("TargetSpec", TARGET), ("RuleSpec", RULE), ("RunSpec", RUN), ("RecordSpec", RECORD),
    ("RenderSpec", RENDER), ("TrainSpec", TRAIN),
    ("RelaxationNetworkSpec", AR_NETWORK, RelaxationChain), ("ConvergeSpec", AR_CONVERGE),
    ("RelaxationTrainSpec", AR_TRAIN), ("BatchTrainSpec", TRAIN_BATCHES),
    ("SeedDeviceSpec", SEED_DEVICE), ("TableSpec", PC_TABLE), ("WaveSpec", PC_WAVE),
    ("SeedDtypeSpec", PC_RUN), ("SeedSpec", SEED_RUN), ("LockingSpec", LOCKING),
    ("SweepSpec", SWEEP), ("ScheduleRuleSpec", SCHEDULE_RULE), ("SchedulesSpec", SCHEDULES),
    ("ThreadsSpec", THREADS_RUN))}
globals().update({cls.__name__: cls for cls in _BY_SCHEMA.values()})


def section_class(kind, section):
    """The spec class of ``kind``'s ``section``."""
    return _BY_SCHEMA[id(SCHEMAS[kind][section])]


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """``kind``, ``description`` and ``sections`` ({name: spec}), each section
    also an attribute (``spec.run.ticks``)."""

    kind: str
    description: str
    sections: Mapping

    @property
    def learning(self):
        """Whether the run changes its weights (train, or a learning_rate > 0)."""
        if self.kind == "train":
            return True
        return (self.schedules if self.kind == "schedules" else self.rule).learning_rate > 0

    @property
    def supervision_delay(self):
        """d_y as a count (``options.resolve_delay``: "auto" is causal when learning)."""
        section = self.train if self.kind == "train" else self.rule
        return resolve_delay(section.supervision_delay, self.learning, self.network.output_level)

    @property
    def levelled(self):
        """Whether the run ticks the levelled graph ("auto": learning, paths unequal)."""
        net = self.network
        return net.graph and resolve_levelled("scene", net.levelled, self.learning, net.skeleton)

    def with_run(self, **changes):
        """This spec with ``run`` keys changed (e.g. seed=s), as the scene with them reads."""
        run = dataclasses.replace(self.sections["run"], **changes)
        return dataclasses.replace(self, sections=FrozenTable(dict(self.sections, run=run)))

    def __getattr__(self, name):
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"a {self.__dict__.get('kind')} scene has no section {name!r}")


def spec_of(resolved):
    """The SceneSpec of a resolved scene (``validate``'s result), read once."""
    kind = resolved["kind"]
    classes = {name: section_class(kind, name) for name in SCHEMAS[kind]}
    return SceneSpec(kind, resolved["description"], FrozenTable(
        {name: cls(**{f.name: frozen(resolved[name][f.name]) for f in dataclasses.fields(cls)})
         for name, cls in classes.items()}))
