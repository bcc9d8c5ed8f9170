"""A flow plugin for tests: registered under `mmmic.flows` by monkeypatching entry points."""

from mmmi_dsl.flows import Flow


class Doubling(Flow):
    """x = factor * z."""

    def __init__(self, size, factor=2.0):
        super().__init__(size)
        self.factor = float(factor)

    def forward(self, z):
        return z * self.factor

    def inverse(self, x):
        return x / self.factor
