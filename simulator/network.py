"""``Network``: the deprecated alias of a dense chain ``Model`` (kept one release).
``Network(weights, biases, activations)`` is ``Model.from_weights``, ``Network.random``
``Model.chain``; an instance IS a Model with the old chain views added (``weights``,
``biases``, ``sizes``, ``activations``, ``copy()``).
"""
from .model import Model


class Network(Model):
    """Deprecated alias of the dense chain ``Model`` (layers named "1".."L")."""

    def __init__(self, weights, biases=None, activations="tanh"):
        m = Model.from_weights(weights, biases, activations)
        super().__init__(m.input_shape, m.vertices, m._params)

    @classmethod
    def random(cls, sizes, activations="tanh", seed=0, scale=1.0, bias_scale=0.0):
        """``Model.chain(sizes, activations, seed, scale, bias_scale)`` as a Network."""
        return cls._of(Model.chain(sizes, activations, seed, scale, bias_scale))

    @classmethod
    def _of(cls, model):
        net = cls.__new__(cls)
        Model.__init__(net, model.input_shape, model.vertices, model._params)
        return net

    @property
    def weights(self):
        return [self._params[f"{v.name}.W"] for v in self.vertices[1:]]

    @property
    def biases(self):
        return [self._params[f"{v.name}.b"] for v in self.vertices[1:]]

    @property
    def sizes(self):
        return [self.input_shape[0]] + [v.shape[0] for v in self.vertices[1:]]

    @property
    def activations(self):
        return [v.layer.activation for v in self.vertices[1:]]

    def copy(self):
        return self._of(Model(self.input_shape, self.vertices, self.parameters()))

    def __repr__(self):
        return f"Network(sizes={self.sizes}, activations={self.activations})"
