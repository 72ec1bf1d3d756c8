"""Ranges, lists and width selection of the search space."""

from __future__ import annotations

import pytest

from metahw.app.explore.objectives import parse_objectives
from metahw.app.explore.space import Candidate, Design, SearchSpace, parse_range, parse_widths, select_widths
from metahw.errors import UserError


def test_ranges_and_lists():
    assert parse_range("4..8", "bits", 2, 16) == (4, 5, 6, 7, 8)
    assert parse_range("4..64", "lanes", 1, 1024, powers_of_two=True) == (4, 8, 16, 32, 64)
    assert parse_range("8,4,4", "bits", 2, 16) == (4, 8)
    assert parse_range("16,2", "lanes", 1, 1024, powers_of_two=True) == (2, 16)


@pytest.mark.parametrize(
    ("text", "powers", "message"),
    [
        ("8..4", False, "A <= B"),
        ("x", False, "comma list"),
        ("1..20", False, "in 2..16"),
        ("3,4", True, "powers"),
        ("5..7", True, "no power of two"),
        ("4..", False, "comma list"),
    ],
)
def test_bad_ranges(text: str, powers: bool, message: str):
    with pytest.raises(UserError, match=message):
        parse_range(text, "x", 2, 16, powers_of_two=powers)


def test_widths_select_checkpoints():
    candidates = [Candidate("a.pt", 32), Candidate("b.pt", 64)]
    assert parse_widths("64,32") == (32, 64)
    assert select_widths(candidates, None) == tuple(candidates)
    assert select_widths(candidates, (64,)) == (candidates[1],)
    with pytest.raises(UserError, match="no checkpoint has that backbone width"):
        select_widths(candidates, (16, 64))


def test_space_grid_and_designs():
    space = SearchSpace((Candidate("a.pt", 32), Candidate("b.pt", 64)), (4, 8), (16,))
    assert space.size == 4 and len(set(space.grid())) == 4
    assert space.design({"checkpoint": "b.pt", "bits": 4, "lanes": 16}) == Design("b.pt", 64, 4, 16)
    with pytest.raises(UserError, match="more than once"):
        SearchSpace((Candidate("a.pt", 32), Candidate("a.pt", 32)), (4,), (16,))


def test_objectives():
    assert [o.name for o in parse_objectives("luts,accuracy")] == ["luts", "accuracy"]
    for bad in ("", "speed", "luts,luts"):
        with pytest.raises(UserError, match="`objectives`"):
            parse_objectives(bad)
