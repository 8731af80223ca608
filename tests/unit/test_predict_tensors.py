"""Predict's tensors: nested lists (or arrays) become shape and values on the wire, and the
server turns them into the model's rows only when each has the trainer's input shape."""

from __future__ import annotations

import numpy as np
import pytest

from anneal import convert
from anneal.errors import InvalidArgument
from anneal.types import Tensor
from cluster.server.predict import rows_of_tensors

IMAGE = [[[float(r * 8 + c) for c in range(8)] for r in range(8)]]  # 1×8×8


def test_nested_lists_and_arrays_become_shape_and_values() -> None:
    for given in (IMAGE, np.asarray(IMAGE, dtype=np.float32)):
        message = convert.tensor_to_pb(given)
        assert list(message.shape) == [1, 8, 8] and list(message.values) == [float(v) for v in range(64)]
        assert convert.tensor_from_pb(message) == Tensor(shape=(1, 8, 8), values=[float(v) for v in range(64)])


def test_a_ragged_tensor_is_refused_by_the_client() -> None:
    with pytest.raises(ValueError, match="ragged"):
        convert.tensor_to_pb([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("given", [["1", "2"], [True, 2.0], [np.array([1.0]), np.array([2.0])]], ids=str)
def test_anything_but_numbers_is_refused_by_the_client(given: list[object]) -> None:
    with pytest.raises(ValueError, match="numbers only"):
        convert.tensor_to_pb(given)


def test_an_array_keeps_its_shape_even_when_empty() -> None:
    assert list(convert.tensor_to_pb(np.zeros((0, 3))).shape) == [0, 3]
    assert list(convert.tensor_to_pb(np.float32(2.5)).shape) == [] and list(convert.tensor_to_pb(2.5).values) == [2.5]


def test_tensors_of_the_input_shape_become_rows() -> None:
    rows = rows_of_tensors([Tensor(shape=(1, 8, 8), values=list(range(64)))] * 2, (1, 8, 8))
    assert rows == [list(range(64))] * 2


@pytest.mark.parametrize(
    ("tensor", "shape", "message"),
    [
        (Tensor(shape=(2, 2), values=[1, 2, 3, 4]), (1, 8, 8), "tensors[1]: has shape 2×2; the model takes 1×8×8"),
        (Tensor(shape=(1, 8, 8), values=[1.0] * 63), (1, 8, 8), "tensors[1]: has 63 values; its shape 1×8×8 holds 64"),
        (Tensor(shape=(0, 8), values=[]), (1, 8, 8), "tensors[1]: has shape 0×8; the model takes 1×8×8"),
        (Tensor(shape=(4,), values=[1, 2, 3, 4]), (), "tensors: this model takes rows of numbers; send rows"),
    ],
    ids=["another shape", "values short of the shape", "an empty dimension", "a rows model"],
)
def test_a_tensor_the_model_cannot_take_is_refused_naming_it(
    tensor: Tensor, shape: tuple[int, ...], message: str
) -> None:
    good = Tensor(shape=shape or (4,), values=[0.0] * int(np.prod(shape or (4,))))
    with pytest.raises(InvalidArgument) as caught:
        rows_of_tensors([good, tensor], shape)
    assert str(caught.value) == message
