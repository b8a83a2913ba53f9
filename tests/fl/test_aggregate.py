"""Aggregation functions against values computed by hand."""

import numpy as np
import pytest

from fedhub.fl import aggregate as agg

U = np.array([[1.0, 10.0], [3.0, 20.0], [8.0, -6.0]])


def test_weighted_average_normalises_over_reporters():
    # weights 1, 1, 2 -> (1 + 3 + 16) / 4 = 5 ; (10 + 20 - 12) / 4 = 4.5
    np.testing.assert_allclose(agg.weighted_average(U, [1, 1, 2]), [5.0, 4.5])
    # Only two of three sampled clients reported: normalise over those two (erratum).
    np.testing.assert_allclose(agg.weighted_average(U[:2], [1, 3]), [2.5, 17.5])


def test_weighted_average_rejects_bad_weights():
    with pytest.raises(ValueError):
        agg.weighted_average(U, [0, 0, 0])
    with pytest.raises(ValueError):
        agg.weighted_average(U, [1, 2])


def test_coordinate_median():
    np.testing.assert_allclose(agg.coordinate_median(U), [3.0, 10.0])
    np.testing.assert_allclose(agg.coordinate_median(U[:2]), [2.0, 15.0])


def test_trimmed_mean():
    u = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    # beta=0.2 of 5 -> cut one at each end: mean(1, 2, 3) = 2
    np.testing.assert_allclose(agg.trimmed_mean(u, 0.2), [2.0])
    np.testing.assert_allclose(agg.trimmed_mean(u, 0.0), [21.2])
    with pytest.raises(ValueError):
        agg.trimmed_mean(u, 0.5)


def test_krum_picks_the_central_update():
    u = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    # f=1 -> n-f-2 = 1 nearest neighbour. Squared distances: 0-1:1, 0-2:1, 1-2:2, to 3: 200,181,181
    np.testing.assert_allclose(agg.krum_scores(u, 1), [1.0, 1.0, 1.0, 181.0])
    np.testing.assert_allclose(agg.krum(u, 1), [0.0, 0.0])  # tie -> lowest index
    np.testing.assert_allclose(agg.krum(u, 1, num_to_keep=3), [1 / 3, 1 / 3])


def test_momentum_step():
    p = np.array([1.0, 2.0])
    g = np.array([0.5, -1.0])
    new, v = agg.momentum_step(p, g, None, server_lr=1.0, momentum=0.9)
    np.testing.assert_allclose(new, [0.5, 3.0])
    np.testing.assert_allclose(v, g)
    new2, v2 = agg.momentum_step(new, g, v, server_lr=0.5, momentum=0.9)
    # v2 = 0.9 * g + g = 1.9 g ; new2 = new - 0.5 * 1.9 g
    np.testing.assert_allclose(v2, [0.95, -1.9])
    np.testing.assert_allclose(new2, [0.5 - 0.475, 3.0 + 0.95])


@pytest.mark.parametrize(
    "kind, v_expected",
    [
        # v starts at 0; d = [2, -1]; d^2 = [4, 1]
        ("adagrad", [4.0, 1.0]),  # v + d^2
        ("adam", [0.04, 0.01]),  # 0.99*0 + 0.01*d^2
        ("yogi", [0.04, 0.01]),  # 0 - 0.01*d^2*sign(0 - d^2) = +0.01 d^2
    ],
)
def test_adaptive_first_step(kind, v_expected):
    p = np.array([1.0, 1.0])
    d = np.array([2.0, -1.0])
    new, m, v = agg.adaptive_step(kind, p, d, None, None, eta=0.1, beta_1=0.9, beta_2=0.99, tau=0.0)
    np.testing.assert_allclose(m, [0.2, -0.1])  # 0.1 * d
    np.testing.assert_allclose(v, v_expected)
    np.testing.assert_allclose(new, p + 0.1 * np.array([0.2, -0.1]) / np.sqrt(v_expected))


def test_yogi_second_step_hand_computed():
    # v_prev = 1, d^2 = 4 -> v = 1 - 0.01*4*sign(1-4) = 1.04
    _, _, v = agg.adaptive_step(
        "yogi", np.zeros(1), np.array([2.0]), np.zeros(1), np.ones(1), 0.1, 0.9, 0.99, 0.0
    )
    np.testing.assert_allclose(v, [1.04])


def test_scaffold_server_update():
    x = np.array([1.0, 1.0])
    c = np.array([0.0, 1.0])
    dy = np.array([[1.0, 0.0], [3.0, 2.0]])
    dc = np.array([[0.5, 0.5], [1.5, -0.5]])
    new_x, new_c = agg.scaffold_server_update(x, c, dy, dc, num_clients=4, server_lr=0.5)
    np.testing.assert_allclose(new_x, [1.0 + 0.5 * 2.0, 1.0 + 0.5 * 1.0])
    # c + |S|/N * mean(dc) = c + 0.5 * [1, 0]
    np.testing.assert_allclose(new_c, [0.5, 1.0])
