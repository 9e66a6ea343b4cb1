import time

import pytest
import torch

from helpers.data import PerSampleDigits, load_digits_split, tensor_loader, upsample
from helpers.models import small_cnn
from helpers.phases import PHASES, compare_step_phases, time_step_phases
from helpers.training import evaluate_accuracy, train_epochs


def test_digits_split_is_fixed_stratified_and_scaled():
    split = load_digits_split()
    assert split.x_train.shape == (1347, 1, 8, 8) and split.x_test.shape == (450, 1, 8, 8)
    assert split.x_train.min() >= 0 and split.x_train.max() <= 1
    assert torch.equal(split.y_test, load_digits_split().y_test), "same split every time"
    totals = torch.bincount(torch.cat([split.y_train, split.y_test]))
    assert (torch.bincount(split.y_test) - 0.25 * totals).abs().max() <= 1, "stratified: a quarter of each class"


def test_upsampled_split_and_bad_arguments():
    assert load_digits_split(image_size=32).x_train.shape == (1347, 1, 32, 32)
    with pytest.raises(ValueError, match="image_size must be an int >= 8"):
        load_digits_split(image_size=4)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.5)


def test_per_sample_dataset_matches_whole_batch_preparation():
    split = load_digits_split()
    data = PerSampleDigits(split.x_train, split.y_train, image_size=16)
    image, label = data[3]
    assert image.shape == (1, 16, 16) and label == split.y_train[3]
    assert torch.equal(image, (upsample(split.x_train, 16)[3] - 0.5) / 0.5)
    with pytest.raises(ValueError, match="one label per image"):
        PerSampleDigits(split.x_train, split.y_train[:5], image_size=16)


def test_training_learns_the_digits():
    torch.manual_seed(0)
    split = load_digits_split()
    model = small_cnn((16, 32))
    losses = train_epochs(model, tensor_loader(split.x_train, split.y_train, batch_size=64, shuffle=True),
                          epochs=4, lr=3e-3, progress=False)
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert evaluate_accuracy(model, split.x_test, split.y_test) > 0.8


def test_training_helpers_reject_bad_arguments():
    split = load_digits_split()
    loader = tensor_loader(split.x_train, split.y_train, batch_size=64, shuffle=False)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        train_epochs(small_cnn(), loader, epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train_epochs(small_cnn(), loader, epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="equal length"):
        evaluate_accuracy(small_cnn(), split.x_test, split.y_test[:3])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        tensor_loader(split.x_train, split.y_train, batch_size=0, shuffle=False)


def test_step_phases_are_measured_for_every_pipeline():
    split = load_digits_split()
    batches = [(split.x_train[:32], split.y_train[:32])]
    model_a, model_b = small_cnn((8,)), small_cnn((8,))
    result = compare_step_phases({"a": (model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1)),
                                  "b": (model_b, batches, torch.optim.SGD(model_b.parameters(), lr=0.1))},
                                 rounds=2, steps_per_round=2, warmup=1)
    assert set(result) == {"a", "b"}
    for times in result.values():
        assert tuple(times.phases_ms) == PHASES and times.steps == 4
        assert all(ms > 0 for ms in times.phases_ms.values())
        assert sum(times.fractions().values()) == pytest.approx(1.0)
    single = time_step_phases(model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1), steps=3, warmup=0)
    assert single.steps == 3
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        compare_step_phases({"a": (model_a, batches, torch.optim.SGD(model_a.parameters(), lr=0.1))}, rounds=0)


class SlowBatches:
    """A re-iterable source of `count` batches of `sizes`, each costing `delay_s` to produce (like a loader)."""

    def __init__(self, sizes: list[int], delay_s: float):
        self.sizes, self.delay_s = sizes, delay_s

    def __iter__(self):
        for size in self.sizes:
            time.sleep(self.delay_s)
            yield torch.randn(size, 1, 16, 16), torch.randint(0, 10, (size,))


def test_the_data_phase_is_paid_every_step_not_replayed_after_one_epoch():
    model = small_cnn((4,))
    # 3 batches per epoch, 20 ms each: 12 recorded steps span four epochs; every one must pay the 20 ms.
    times = time_step_phases(model, SlowBatches([8, 8, 8], 0.020), torch.optim.SGD(model.parameters(), lr=0.1),
                             steps=12, warmup=0)
    assert times.steps == 12
    assert times.phases_ms["data"] >= 20.0 and times.mean_ms["data"] >= 20.0
    assert set(times.mean_ms) == {*PHASES, "step"}


def test_a_ragged_last_batch_runs_but_is_not_recorded():
    model = small_cnn((4,))
    result = compare_step_phases({"a": (model, SlowBatches([8, 8, 3], 0.0), torch.optim.SGD(model.parameters(), lr=0.1))},
                                 rounds=2, steps_per_round=4, warmup=1)["a"]
    assert result.steps == 8, "eight full-size steps recorded; the 3-image steps ran in between"
    assert len(result.round_step_ms) == 2


def test_a_generator_used_up_after_one_pass_is_refused():
    model = small_cnn((4,))
    once = (batch for batch in SlowBatches([8], 0.0))
    with pytest.raises(ValueError, match="generator is used up"):
        time_step_phases(model, once, torch.optim.SGD(model.parameters(), lr=0.1), steps=3, warmup=0)


def test_small_cnn_shapes_and_arguments():
    assert small_cnn()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert small_cnn((4, 8), in_channels=3, num_classes=5)(torch.randn(1, 3, 8, 8)).shape == (1, 5)
    with pytest.raises(ValueError, match="at least one stage"):
        small_cnn(())
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        small_cnn(num_classes=1)
