"""Constructors: proto-latents, templates, matrices and flows, with file safety.

Each constructor call is bound to its built-in definition (:mod:`mmmi_dsl.builtins`) and its
arguments are checked here, once, with positions; files resolve inside the spec's directory.
"""

from __future__ import annotations

import math
from pathlib import Path

from mmmi_dsl import builtins, ir
from mmmi_dsl.builtins import weights
from mmmi_dsl.builtins.signature import Builtin
from mmmi_dsl.builtins.templates import DataFileError, read_image, read_npy
from mmmi_dsl.errors import did_you_mean
from mmmi_dsl.ir import Expr, Span
from mmmi_dsl.lang.check import gib, physical_memory
from mmmi_dsl.lang.lower import limits
from mmmi_dsl.lang.lower.algebra import num_node, sym_node
from mmmi_dsl.lang.lower.scope import Scope
from mmmi_dsl.lang.syntax import Binder, Call, Kwarg, Name, Shape, Statement, String


def npy_shape(path: Path) -> tuple[int, ...] | None:
    """Shape of a .npy file from its header alone (no pickle, no data read)."""
    import numpy as np
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)  # the public readers (numpy 2.4 has no _read_array_header)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                return None
            shape, _, dtype = read[version](f)
    except Exception:  # noqa: BLE001 - any malformed header is a data error
        return None
    if dtype.hasobject:
        return None
    return tuple(int(s) for s in shape)


def canonical_call_text(call: Call, low: Scope, env) -> str:
    """A stable name for an inline template: its call with arguments evaluated."""
    parts = []
    for a in call.args:
        if isinstance(a, Kwarg):
            parts.append(f"{a.name}={arg_text(a.value, low, env)}")
        else:
            parts.append(arg_text(a, low, env))
    return f"{call.func}({', '.join(parts)})"


def arg_text(node, low: Scope, env) -> str:
    if isinstance(node, String):
        return f'"{node.value}"'
    if isinstance(node, Shape):
        return "x".join(map(str, node.dims))
    if isinstance(node, Name) and node.index is None and node.name in low.dims and low.dims[node.name].shape:
        return "x".join(map(str, low.dims[node.name].shape))
    if isinstance(node, Name) and low._kind(node, env)[0] == "template":  # noqa: SLF001
        return low._ref(node, env)  # noqa: SLF001
    if isinstance(node, Call):
        return canonical_call_text(node, low, env)
    v = low.value(node, env, allow_params=False)
    return str(int(v)) if v.is_integer() else repr(v)


def call_name(builtin: Builtin) -> str:
    return f"{builtin.name}()"


class Constructors(Scope):
    """Lower declarations that build things: protos, templates, matrices, flows."""

    def _lower_proto(self, s: Statement, env) -> None:
        if s.type.name == "uniform":
            return self.lower_uniform_proto(s, env)  # lower/laws.py
        kind, size, sym = self._type_size(s.type, env)
        if s.type.name == "matrix":
            self.fail("E0209", "a proto-latent is `scalar` or `vector[d]`", s.type.span)
        for m in self._members(s, env):
            self.protos[m] = ir.Proto(name=m, kind=kind, size=size, size_expr=sym, span=s.decl.span)
            self.sizes[m] = size

    def _lower_named_template(self, s: Statement, env) -> None:
        for m in self._members(s, env):
            if not isinstance(s.value, Call):
                if isinstance(s.value, Name) and self._kind(s.value, env)[0] == "template":
                    src = self.templates[self._ref(s.value, env)]
                    t = src.model_copy(update={"name": m, "span": s.decl.span})
                else:
                    self.fail("E0209", "a template is built by a constructor", s.value.span, "",
                              ", ".join(b.signature() for b in builtins.TEMPLATES.values()))
            else:
                t = self.template_call(s.value, env, name=m, span=s.decl.span)
            if s.type is not None:
                _, size, _ = self._type_size(s.type, env)
                if size != t.size:
                    self.fail("E0203", f"template `{m}` has {t.size} entries but is declared with {size}",
                              s.value.span, f"{t.size} entries", "make the declared size match the constructor")
            self.templates[m] = t

    def bind(self, call: Call, builtin: Builtin, latent_first: bool = False) -> dict:
        """Bind a call's arguments to ``builtin``'s: positional ones in order, then keywords, each once.

        With ``latent_first`` (flows) the one positional argument is the latent and is not bound.
        """
        params = builtin.positional
        out: dict[str, object] = {}
        pos = [a for a in call.args if not isinstance(a, (Kwarg, Binder))]
        if not latent_first and len(pos) > len(params):
            self.fail("E0209", f"{call.func}() takes {len(params)} positional argument"
                      f"{'s' * (len(params) != 1)}, got {len(pos)}", call.span, "", builtin.signature())
        for p, a in zip(params, [] if latent_first else pos):
            out[p.name] = a
        for a in call.args:
            if isinstance(a, Binder):
                self.fail("E0209", f"`{a.var} in ...` is only allowed in sum(...)", a.span)
            if isinstance(a, Kwarg):
                if builtin.arg(a.name) is None:
                    names = [x.name for x in builtin.args]
                    self.fail("E0209", f"{call.func}() has no argument `{a.name}`", a.span, "",
                              did_you_mean(a.name, names) if names else f"{call.func}() takes no arguments")
                if a.name in out:
                    self.fail("E0209", f"argument `{a.name}` given twice", a.span, "",
                              "give each argument once")
                out[a.name] = a.value
        missing = [p.name for p in builtin.args if p.required and p.name not in out]
        if missing:
            self.fail("E0209", f"{call.func}() is missing {', '.join(f'`{m}`' for m in missing)}", call.span, "",
                      f"{builtin.kind}: {builtin.signature()}")
        return out

    def number_arg(self, builtin: Builtin, name: str, node, env, allow_params: bool = False) -> int | float:
        """The value of a numeric argument, checked against its declared type and bounds."""
        arg = builtin.arg(name)
        if isinstance(node, String):
            self.fail("E0209", f"`{name}` is a number, not a string", node.span, "", arg.help)
        if arg.name == "seed":
            v: float = self.seed_value(node, env)
        else:
            v = self.value(node, env, allow_params=allow_params)
        problem = arg.problem(v)
        if problem:
            self.fail("E0206", f"{call_name(builtin)}: {problem}", node.span, "", arg.help)
        return int(v) if arg.type == "int" else v

    def string_arg(self, builtin: Builtin, name: str, node) -> str:
        """The value of a string argument, checked against its declared choices."""
        arg = builtin.arg(name)
        if not isinstance(node, String):
            self.fail("E0209", f"`{name}` takes a string in double quotes", node.span, "",
                      arg.bounds_text() or arg.help)
        problem = arg.problem(node.value)
        if problem:
            self.fail("E0209", f"{call_name(builtin)}: {problem}", node.span, "", arg.help)
        return node.value

    def _path(self, node, env) -> tuple[str, Path]:
        if not isinstance(node, String):
            self.fail("E0209", "expected a file name in double quotes", node.span, "", 'image("templates/mass.png")')
        if "\x00" in node.value:  # the OS refuses such names (ValueError from every path call)
            self.fail("E0208", "a file name cannot contain a NUL character", node.span)
        p = Path(node.value)
        full = p if p.is_absolute() else self.base_dir / p
        if not self.allow_paths:
            root = self.base_dir.resolve()
            try:
                real = full.resolve()  # follows links: a link inside pointing outside is outside
            except (OSError, RuntimeError):  # a link loop
                real = full
            if not real.is_relative_to(root):
                self.fail("E0216", f"file `{node.value}` is outside the spec's directory", node.span,
                          f"resolves to {real}", f"pass --allow-paths to allow files outside {root} "
                          "(allow_paths=True from Python)")
        if not full.is_file():
            self.fail("E0208", f"file `{node.value}` not found", node.span, f"looked for {full}",
                      "paths are relative to the spec file's directory")
        self.files[node.value] = str(full)  # generate keeps a copy with the dataset (dataset/spec_files.py)
        return node.value, full

    def template_call(self, call: Call, env, name: str | None = None, span: Span | None = None) -> ir.Template:
        """Resolve a template constructor call (named or inline)."""
        if call.func not in builtins.TEMPLATES:
            self.fail("E0209", f"`{call.func}` is not a template constructor", call.func_span, "",
                      did_you_mean(call.func, builtins.TEMPLATES))
        builtin = builtins.TEMPLATES[call.func]
        a = self.bind(call, builtin)
        kind = call.func
        args: dict[str, object] = {}
        path = None
        size_expr: Expr | None = None
        if kind in ("ones", "onehot", "random"):
            size = self.int_value(a["size"], env, "size")
            node = a["size"]
            if isinstance(node, Name) and node.index is None and node.name in self.dims:
                size_expr = sym_node(node.name)
            if size <= 0 or size > limits.MAX_VECTOR_SIZE:
                self.fail("E0215" if size > 0 else "E0206", f"template size {size:,} is out of range",
                          a["size"].span, "", f"sizes run from 1 to {limits.MAX_VECTOR_SIZE:,}")
            if kind == "onehot":
                k = self.int_value(a["index"], env, "index")
                if not 1 <= k <= size:
                    self.fail("E0206", f"onehot index {k} is outside 1..{size}", a["index"].span, "",
                              "indices are 1-based")
                args["index"] = k
            if kind == "random":
                args["seed"] = self.number_arg(builtin, "seed", a["seed"], env)
        elif kind == "blob":
            shape = self.shape_of(a["shape"], env)
            if len(shape) not in (2, 3):
                self.fail("E0203", "blob() needs an image shape CxHxW or HxW", a["shape"].span)
            size = math.prod(shape)
            self.check_vector_size(size, a["shape"].span)
            args["shape"] = tuple(shape)
            for key in ("row", "col", "sigma"):  # sigma^2 must neither overflow nor vanish: its bounds
                args[key] = self.number_arg(builtin, key, a[key], env)
        elif kind == "image":
            given, full = self._path(a["file"], env)
            mode = a.get("mode")
            mode_value = self.string_arg(builtin, "mode", mode) if mode is not None else builtin.arg("mode").default
            try:
                channels, h, w = read_image(full, mode_value).shape  # decoded now: a bad file fails at check
            except DataFileError as err:
                self.fail("E0208", f"cannot read image `{given}`: it {err}", a["file"].span, "",
                          "templates are PNG or JPEG images")
            size = channels * h * w
            args.update({"mode": mode_value, "shape": (channels, h, w), "file": given})
            path = str(full)
        elif kind == "npy":
            given, full = self._path(a["file"], env)
            shape = npy_shape(full)
            if shape is None:
                self.fail("E0208", f"`{given}` is not a readable .npy array", a["file"].span, "",
                          "save with numpy.save (no pickled objects)")
            size = math.prod(shape)
            self.check_vector_size(size, a["file"].span)
            self._check_npy_contents(given, full, a["file"].span, "a readable .npy array")
            args["file"] = given
            path = str(full)
        else:  # normalize
            inner = a["template"]
            t = self.template_of(inner, env)
            size = t.size
            args["of"] = t.name
        if name is None:
            name = canonical_call_text(call, self, env)
        return ir.Template(name=name, kind=kind, size=size, size_expr=size_expr or num_node(size), args=args,
                           path=path, span=span or call.span)

    def _check_npy_contents(self, given: str, full: Path, span, what: str) -> None:
        """Read a .npy file's values now: real numbers only, all finite (else E0208 at the file name)."""
        try:
            read_npy(full)
        except DataFileError as err:
            self.fail("E0208", f"`{given}` is not {what}: it {err}", span, "",
                      "save real numbers with numpy.save (no pickled objects)")

    def template_of(self, node, env) -> ir.Template:
        """The template a node denotes: a named one or an inline constructor."""
        if isinstance(node, Call):
            t = self.template_call(node, env)
            self.templates.setdefault(t.name, t)
            return self.templates[t.name]
        if isinstance(node, Name):
            kind, ref = self._kind(node, env)
            if kind == "template":
                return self.templates[ref]
            self.fail("E0103", f"`{ref}` is a {kind}, not a template", node.span)
        self.fail("E0209", "expected a template", node.span)

    def _lower_matrix(self, s: Statement, env) -> None:
        for m in self._members(s, env):
            if m in self.matrices:  # a matrix another one is built from is lowered first, on demand
                continue
            mat = self.matrix_call(s.value, env, m, s.decl.span)
            if s.type is not None:
                if s.type.name != "matrix" or len(s.type.args) != 2:
                    self.fail("E0209", "a matrix type is matrix[rows, cols]", s.type.span)
                r = self.int_value(s.type.args[0], env, "size")
                c = self.int_value(s.type.args[1], env, "size")
                if (r, c) != (mat.rows, mat.cols):
                    self.fail("E0203", f"matrix `{m}` is {mat.rows}x{mat.cols} but declared {r}x{c}", s.value.span)
            self.matrices[m] = mat

    def matrix_call(self, call, env, m: str, span: Span | None) -> ir.Matrix:
        """The matrix a constructor call builds, named ``m``."""
        if not isinstance(call, Call) or call.func not in builtins.MATRICES:
            self.fail("E0209", "a matrix is built by a constructor", call.span, "",
                      did_you_mean(getattr(call, "func", ""), builtins.MATRICES))
        builtin = builtins.MATRICES[call.func]
        a = self.bind(call, builtin)
        args: dict[str, object] = {}
        path = None
        if call.func in ("uniform", "normal"):
            rows = self.int_value(a["rows"], env, "size")
            cols = self.int_value(a["cols"], env, "size")
            args["seed"] = self.number_arg(builtin, "seed", a["seed"], env)
            for k, v in builtin.defaults().items():
                args[k] = self.number_arg(builtin, k, a[k], env) if k in a else v
        elif call.func in ("orthogonal", "identity"):
            rows = cols = self.int_value(a["size"], env, "size")
            if call.func == "orthogonal":
                args["seed"] = self.number_arg(builtin, "seed", a["seed"], env)
        else:
            given, full = self._path(a["file"], env)
            shape = npy_shape(full)
            if shape is None or len(shape) != 2:
                self.fail("E0208", f"`{given}` is not a 2-D .npy array", a["file"].span)
            rows, cols = shape
            if 0 < rows * cols <= limits.MAX_MATRIX_ENTRIES:
                self._check_npy_contents(given, full, a["file"].span, "a usable 2-D .npy array")
            args["file"] = given
            path = str(full)
        if rows <= 0 or cols <= 0:
            self.fail("E0206", f"matrix shape {rows}x{cols} must be positive", call.span)
        if rows * cols > limits.MAX_MATRIX_ENTRIES:
            self.fail("E0215", f"matrix {rows}x{cols} needs {gib(rows * cols * 8)} as float64", call.span, "",
                      f"at most {limits.MAX_MATRIX_ENTRIES:,} entries "
                      f"({gib(limits.MAX_MATRIX_ENTRIES * 8)}) are allowed; "
                      f"this machine has {gib(physical_memory())}")
        return ir.Matrix(name=m, kind=call.func, rows=rows, cols=cols, args=args, path=path, span=span)

    def _lower_flow(self, s: Statement, env, variables) -> ir.Flow:
        name = self._decl_name(s.decl, env)
        steps: list[tuple[ir.FlowStep, Builtin | None, dict]] = []  # outermost first
        node = s.value
        while True:
            if not isinstance(node, Call):
                self.fail("E0210", "a flow is written as a call of a flow on a latent", node.span, "",
                          "flow x1 = identity(z1)")
            builtin = builtins.FLOWS.get(node.func)
            if builtin is None and node.func not in builtins.plugin_flows():
                known = list(builtins.FLOWS) + list(builtins.plugin_flows())
                self.fail("E0210", f"unknown flow `{node.func}`", node.func_span, "",
                          f"{did_you_mean(node.func, known)} (flows: {', '.join(known)})")
            pos = [a for a in node.args if not isinstance(a, (Kwarg, Binder))]
            if len(pos) != 1:
                self.fail("E0209", f"{node.func}() takes the latent as its one positional argument", node.span,
                          "", f"{node.func}(z, key = value)")
            if builtin is None:  # a plugin: it checks its own arguments when built
                bound, args = {}, self._plugin_args(node, env)
            else:
                bound = self.bind(node, builtin, latent_first=True)
                args = self._flow_args(builtin, bound, env)
            steps.append((ir.FlowStep(name=node.func, args=args, span=node.span), builtin, bound))
            node = pos[0]
            if isinstance(node, Name):
                break
        kind, latent = self._kind(node, env)
        if kind not in ("latent", "proto"):
            self.fail("E0103", f"a flow reads a latent; `{latent}` is a {kind}", node.span)
        if latent not in variables and latent not in self.protos:
            self._failed_before(latent, node.span)
        size = variables[latent].size if latent in variables else self.protos[latent].size
        if s.type is not None:
            if s.type.name not in ("image", "vector"):
                self.fail("E0209", "a modality's type is image[shape] or vector[d]", s.type.span)
            if len(s.type.args) != 1:
                self.fail("E0209", f"`{s.type.name}` takes one size", s.type.span)
        sizes = [size]  # what each step reads, innermost first, then the chain's output
        for _, builtin, _ in reversed(steps):
            sizes.append(sizes[-1] * (builtin.expands if builtin is not None else 1))
        out = sizes[-1]
        shape = tuple(self.shape_of(s.type.args[0], env)) if s.type is not None else (out,)
        if size and math.prod(shape) != out:
            where = s.type.span if s.type else s.span
            if out == size:
                self.fail("E0203", f"flow `{name}` outputs {'x'.join(map(str, shape))} = {math.prod(shape)} values "
                          f"but latent `{latent}` has {size}", where, "",
                          "flows are bijections: the output has the latent's size")
            self.fail("E0203", f"flow `{name}` outputs {'x'.join(map(str, shape))} = {math.prod(shape)} values "
                      f"but its chain maps latent `{latent}` of size {size} to {out}", where, "",
                      f"an injective step (such as swissroll) multiplies the size: `: vector[{out}]`, or no type")
        for (step, builtin, bound), read in zip(steps, reversed(sizes[:-1])):
            if builtin is not None and size:
                self._check_flow_fits(builtin, step, bound, latent, read)
        return ir.Flow(name=name, latent=latent, steps=tuple(st for st, _, _ in reversed(steps)), shape=shape,
                       span=s.decl.span)

    def _flow_args(self, builtin: Builtin, bound: dict, env) -> dict[str, object]:
        """A built-in flow's given keyword arguments, each checked against its definition."""
        args: dict[str, object] = {}
        for key, node in bound.items():
            arg = builtin.arg(key)
            if arg.type == "file":
                args[key] = self._weights_file(node, env)
            elif arg.type == "str":
                args[key] = self.string_arg(builtin, key, node)
            else:
                args[key] = self.number_arg(builtin, key, node, env, allow_params=True)
        return args

    def _weights_file(self, node, env) -> str:
        """A flow's ``weights``: a safetensors file inside the spec's folder (never unpickled), as a full path."""
        full = self._path(node, env)[1]
        problem = weights.file_problem(full)
        if problem:
            self.fail("E0208", f"weights `{node.value}` {problem}", node.span, "",
                      "convert them with mmmic convert-weights (or safetensors.torch.save_file); pickles are "
                      "refused unread because unpickling runs code")
        return str(full)

    def _plugin_args(self, call: Call, env) -> dict[str, object]:
        args: dict[str, object] = {}
        for a in call.args:
            if isinstance(a, Binder):
                self.fail("E0209", "`in` is only allowed in sum(...)", a.span)
            if isinstance(a, Kwarg):
                if a.name in args:
                    self.fail("E0209", f"argument `{a.name}` given twice", a.span, "", "give each argument once")
                if a.name == "weights":  # for plugins too: a file relative to the spec, kept inside its folder
                    args[a.name] = self._weights_file(a.value, env)
                elif isinstance(a.value, String):
                    args[a.name] = a.value.value
                else:
                    v = self.value(a.value, env)
                    args[a.name] = int(v) if v.is_integer() else v
        return args

    def _check_flow_fits(self, builtin: Builtin, step: ir.FlowStep, bound: dict, latent: str, size: int) -> None:
        """The latent's size and a learned flow's weights (config, tensors, classes) fit the flow."""
        complete = {**builtin.defaults(), **step.args}
        problem = builtin.size_problem(size, complete)
        if problem:
            self.fail("E0203", f"flow {builtin.name}() cannot take latent `{latent}`: {problem}", step.span, "",
                      f"latent `{latent}` has size {size:,}")
        if builtin.weights is None:
            return
        shipped = builtin.weights.startswith("shipped:")
        path = weights.SHIPPED[builtin.weights.split(":", 1)[1]] if shipped else Path(str(complete["weights"]))
        node = bound.get("weights")
        info = self._weights.get(path)
        if info is None and shipped and not path.is_file():
            try:
                weights.shipped(builtin.weights.split(":", 1)[1])
            except weights.WeightsError as err:
                self.fail("E0208", str(err), step.span, "", "see docs/flows.md for the flow and its training")
        if info is None:
            try:
                info = self._weights[path] = weights.inspect(path)
            except (weights.WeightsError, OSError) as err:
                self.fail("E0208", f"weights `{node.value if node else path.name}`: {err}",
                          node.span if node else step.span, "",
                          "weights are a .safetensors file written by `mmmic train-flow`, with the "
                          "architecture in its metadata")
        if weights.arch(info.config) == "custom":
            self.fail("E0208", f"weights `{node.value if node else path.name}` have a custom architecture, which "
                      f"{builtin.name}() cannot build", node.span if node else step.span, "",
                      "the flow plugin that registered the architecture builds it: name that flow instead")
        if info.dim != size:
            self.fail("E0203", f"flow {builtin.name}() acts on vectors of size {info.dim:,} (its weights' "
                      f"dimension) but latent `{latent}` has size {size:,}", step.span, "",
                      "give the flow a latent of its weights' size, e.g. image[1x8x8] = 64 for digits")
        label = int(complete["class"])
        if not 0 <= label < info.n_classes:
            where = bound.get("class")
            self.fail("E0206", f"class {label} is outside the {info.n_classes} classes of these weights",
                      where.span if where is not None else step.span, "",
                      f"class runs from 0 to {info.n_classes - 1}")

