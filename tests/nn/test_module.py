"""The Module / Parameter conventions every layer and model relies on."""
import numpy as np
import pytest

from minimner import backend
from minimner.nn.module import Module, ModuleList, Parameter


class _Leaf(Module):
    def __init__(self, n=3):
        super().__init__()
        self.weight = Parameter(np.arange(n * 2, dtype=np.float32).reshape(n, 2))
        self.bias = Parameter(np.zeros(n, np.float32))
        self.register_buffer("running_mean", np.ones(n, np.float32))
        self.not_a_param = np.zeros(2)                     # plain arrays are not registered

    def forward(self, x):
        self._save_cache(x)
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
        x = self._pop_cache()
        self.weight.grad += dy.T @ x
        self.bias.grad += dy.sum(0)
        return dy @ self.weight.data


class _Net(Module):
    def __init__(self):
        super().__init__()
        self.enc = _Leaf(3)
        self.layers = ModuleList([_Leaf(2), _Leaf(4)])
        self.scale = Parameter(np.ones(1, np.float32))


def test_named_parameters_are_dotted_and_ordered_like_torch():
    net = _Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "enc.weight", "enc.bias", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert len(net.parameters()) == 7
    assert net.num_parameters() == 1 + (6 + 3) + (4 + 2) + (8 + 4)
    assert [n for n, _ in net.named_buffers()] == ["enc.running_mean", "layers.0.running_mean", "layers.1.running_mean"]


def test_state_dict_holds_parameters_and_buffers():
    sd = _Net().state_dict()
    assert set(sd) == {"scale", "enc.weight", "enc.bias", "enc.running_mean", "layers.0.weight", "layers.0.bias",
                       "layers.0.running_mean", "layers.1.weight", "layers.1.bias", "layers.1.running_mean"}
    assert "enc.not_a_param" not in sd
    assert sd["enc.weight"].shape == (3, 2)


def test_load_state_dict_round_trip_copies_and_casts():
    a, b = _Net(), _Net()
    src = {k: np.asarray(v, np.float64) + 1.0 for k, v in a.state_dict().items()}   # float64 source
    out = b.load_state_dict(src)
    assert out == {"missing_keys": [], "unexpected_keys": []}
    for k, v in b.state_dict().items():
        assert v.dtype == np.float32                        # cast to the destination dtype
        np.testing.assert_array_equal(v, src[k].astype(np.float32))
    src32 = {k: v.astype(np.float32) for k, v in src.items()}
    b.load_state_dict(src32)
    src32["enc.weight"][0, 0] = 123.0
    assert b.enc.weight.data[0, 0] != 123.0                  # never aliases the caller's array
    assert not b.enc.weight.grad.any() and b.enc.weight.grad.shape == (3, 2)


def test_load_state_dict_missing_and_unexpected_keys():
    net = _Net()
    sd = dict(net.state_dict())
    del sd["enc.bias"]
    sd["enc.extra"] = np.zeros(1)
    with pytest.raises(KeyError) as e:
        net.load_state_dict(sd)
    assert "missing keys: ['enc.bias']" in str(e.value) and "unexpected keys: ['enc.extra']" in str(e.value)
    out = net.load_state_dict(sd, strict=False)
    assert out == {"missing_keys": ["enc.bias"], "unexpected_keys": ["enc.extra"]}


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    net = _Net()
    sd = dict(net.state_dict())
    sd["layers.1.weight"] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"'layers\.1\.weight': expected \(4, 2\), got \(4, 3\)"):
        net.load_state_dict(sd)


def test_zero_grad_and_backward_accumulates():
    leaf = _Leaf()
    x = np.ones((2, 2), np.float32)
    for _ in range(2):
        leaf.forward(x)
        leaf.backward(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(leaf.bias.grad, 4.0)
    leaf.zero_grad()
    assert not leaf.weight.grad.any() and not leaf.bias.grad.any()


def test_train_eval_propagates_to_children():
    net = _Net()
    assert all(m.training for _, m in net.named_modules())
    assert net.eval() is net
    assert not any(m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())


def test_backward_without_forward_raises():
    leaf = _Leaf()
    with pytest.raises(RuntimeError, match="_Leaf.backward called without a pending forward"):
        leaf.backward(np.ones((1, 3), np.float32))
    leaf.forward(np.ones((1, 2), np.float32))
    leaf.backward(np.ones((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="without a pending forward"):   # one backward per forward
        leaf.backward(np.ones((1, 3), np.float32))


def test_parameter_grad_matches_data_and_double():
    p = Parameter(np.ones((2, 3), np.float32))
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float32 and not p.grad.any()
    net = _Net().double()
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net.enc.running_mean.dtype == np.float64


def test_to_numpy_keeps_values(xp_name):
    net = _Net()
    ref = {k: np.array(v) for k, v in net.state_dict().items()}
    net.to(xp_name)
    for k, v in net.state_dict().items():
        assert backend.device_of(v) == xp_name
        np.testing.assert_array_equal(backend.asnumpy(v), ref[k])


def test_module_list_indexing():
    ml = ModuleList([_Leaf(1), _Leaf(2)])
    assert len(ml) == 2 and ml[1].weight.shape == (2, 2) and [m.bias.shape for m in ml] == [(1,), (2,)]


def test_assigning_before_super_init_is_an_error():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(RuntimeError, match="super"):
        Bad()
