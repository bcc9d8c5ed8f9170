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


# A user's own velocity architecture (docs/flows.md, "Bring your own model"): a CNF whose network is
# built by the plugin from a "custom" config; weights converted with `mmmic convert-weights`.
import torch  # noqa: E402

from mmmi_dsl.flows.cnf import CNF  # noqa: E402


class TinyVelocity(torch.nn.Module):
    """v(x, t, c) = a small MLP of [x, t, one-hot c]; class n_classes is the null class."""

    def __init__(self, dim: int, n_classes: int, width: int):
        super().__init__()
        self.n_classes = n_classes
        self.body = torch.nn.Sequential(torch.nn.Linear(dim + 1 + n_classes + 1, width), torch.nn.Tanh(),
                                        torch.nn.Linear(width, dim))

    def forward(self, x, t, c):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1).expand(len(x), 1)
        onehot = torch.nn.functional.one_hot(c, self.n_classes + 1).to(x.dtype)
        return self.body(torch.cat([x, t, onehot], dim=1))


class TinyFlow(CNF):
    """`tiny(z, weights = "tiny.safetensors", class = k)`: a CNF over TinyVelocity."""

    def build_net(self, config):
        return TinyVelocity(config["dim"], config["n_classes"], config["width"])
