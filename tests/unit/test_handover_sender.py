"""Rank 0's hand-overs leave the training thread at once, arrive in order one at a time, and
carry the state as it was when reported."""

from __future__ import annotations

import threading
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch
from torch import nn

from cluster.worker.handover import Handover
from cluster.worker.sender import HandoverSender, snapshot


def handover(epoch: int) -> Handover:
    return Handover([{"loss": 1.0 / epoch, "epoch": epoch}], None, final=False)


def test_training_goes_on_while_a_hand_over_is_on_its_way_and_they_arrive_in_order() -> None:
    arrived: list[Handover] = []
    queue_answers = threading.Event()

    def put(item: Handover) -> None:
        queue_answers.wait(5)
        arrived.append(item)

    sender = HandoverSender(put)
    sender.send(handover(1))  # returns while the queue has not answered
    assert arrived == []
    second = threading.Thread(target=sender.send, args=(handover(2),))
    second.start()
    second.join(0.3)
    assert second.is_alive(), "a second hand-over went out before the first arrived"
    queue_answers.set()
    second.join(5)
    sender.wait()
    assert [h.epochs[0]["epoch"] for h in arrived] == [1, 2]


def test_a_hand_over_that_failed_raises_on_the_training_thread() -> None:
    def put(item: Handover) -> None:
        raise ConnectionError("the trial's queue is gone")

    sender = HandoverSender(put)
    sender.send(handover(1))
    with pytest.raises(ConnectionError, match="queue is gone"):
        sender.send(handover(2))
    sender.wait()  # the error was raised once


def test_a_snapshot_keeps_the_state_as_reported_while_training_changes_it() -> None:
    weights = torch.zeros(3, requires_grad=True)
    moments = np.zeros(2)
    state = {"model": {"w": weights}, "optimizer": [moments, (weights, 4)], "epoch": 1}
    taken = snapshot(state)
    with torch.no_grad():
        weights += 1.0
    moments += 1.0
    assert torch.equal(taken["model"]["w"], torch.zeros(3))
    assert np.array_equal(taken["optimizer"][0], np.zeros(2))
    assert isinstance(taken["optimizer"][1], tuple) and taken["optimizer"][1][1] == 4
    assert taken["model"]["w"].device.type == "cpu" and not taken["model"]["w"].requires_grad


def test_a_snapshot_keeps_the_containers_a_trainer_gave() -> None:
    model = nn.Linear(2, 1)
    Moments = namedtuple("Moments", ["mean", "variance"])
    taken = snapshot({"model": model.state_dict(), "moments": Moments(torch.ones(1), 2.0)})
    # A module's state dict, as load_state_dict reads it: an OrderedDict with its versions.
    assert isinstance(taken["model"], OrderedDict) and taken["model"]._metadata == model.state_dict()._metadata
    nn.Linear(2, 1).load_state_dict(taken["model"])
    assert taken["moments"] == Moments(torch.ones(1), 2.0) and isinstance(taken["moments"], Moments)
