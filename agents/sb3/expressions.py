"""RL-Zoo hyperparameter expressions read without ``eval``: a small interpreter over Python's ``ast``.

The zoo writes some values as Python expressions, e.g. ``policy_kwargs: "dict(net_arch=dict(pi=[64, 64],
vf=[64, 64]), activation_fn=nn.Tanh, log_std_init=-0.5)"`` or ``normalize: "dict(norm_obs=True)"``.
:func:`literal_expression` accepts exactly: numbers (with a sign), strings, ``True`` / ``False`` / ``None``,
lists, tuples, ``{key: value}`` displays, ``dict(key=value, ...)`` and the activation classes of
:data:`ACTIVATIONS` as ``nn.<Name>`` (``th.nn.<Name>``, ``torch.nn.<Name>``). Anything else (a name, another
call, an attribute, an operator) is a one-line ``ValueError``: nothing in a file is executed.
"""

from __future__ import annotations

import ast
from typing import Any

import torch.nn

__all__ = ["ACTIVATIONS", "literal_expression"]

ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "SELU", "Sigmoid", "Softplus", "Mish", "Identity")
_NN_PREFIXES = (("nn",), ("th", "nn"), ("torch", "nn"))
_ALLOWED = (
    "numbers, strings, True/False/None, lists, tuples, {key: value}, dict(key=value, ...) and "
    f"nn.<{'|'.join(ACTIVATIONS)}>"
)


class _Rejected(ValueError):
    pass


def _dotted(node: ast.AST) -> tuple[str, ...] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return tuple([node.id] + parts[::-1])
    return None


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
        raise _Rejected("a sign on a non-number")
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Rejected("'**' in a dict display")
        out = {}
        for k, v in zip(node.keys, node.values):
            assert k is not None  # '**' entries were rejected above
            key = _value(k)
            if isinstance(key, (list, dict)):
                raise _Rejected("an unhashable dict key")
            out[key] = _value(v)
        return out
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            raise _Rejected(f"the call {ast.unparse(node.func)}(...)")
        if node.args or any(kw.arg is None for kw in node.keywords):
            raise _Rejected("dict(...) with positional or '**' arguments")
        return {kw.arg: _value(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.Attribute, ast.Name)):
        parts = _dotted(node)
        if parts is not None and parts[:-1] in _NN_PREFIXES and parts[-1] in ACTIVATIONS:
            return getattr(torch.nn, parts[-1])
        raise _Rejected(f"the name {ast.unparse(node)!r}")
    raise _Rejected(f"the expression {ast.unparse(node)!r}")


def literal_expression(text: str) -> Any:
    """The value of the zoo expression ``text`` (see the module docstring); ``ValueError`` naming the part
    that is not allowed and what is."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(
            f"hyperparameter expression {text!r} is not valid Python syntax ({exc.msg}); allowed: {_ALLOWED}"
        ) from None
    try:
        return _value(tree.body)
    except _Rejected as exc:
        raise ValueError(f"hyperparameter expression {text!r}: {exc} is not allowed; allowed: {_ALLOWED}") from None
    except RecursionError:
        raise ValueError(f"hyperparameter expression {text!r} is nested too deeply") from None
