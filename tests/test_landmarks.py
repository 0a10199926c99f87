import pytest

from cephalo.landmarks import (
    AARIZ29,
    CLDETECTION38,
    ISBI19,
    catalogue_from_params,
    get_catalogue,
    map_by_name,
)


def test_catalogue_sizes_and_official_order():
    assert len(ISBI19) == 19 and len(AARIZ29) == 29 and len(CLDETECTION38) == 38
    assert ISBI19.symbols[:4] == ["S", "N", "Or", "Po"] and ISBI19.symbols[-1] == "Ar"
    assert AARIZ29[0].source_id == "ckr20ld7v4a4r0za3gqkydid2" and AARIZ29[0].symbol == "A"
    assert AARIZ29[10].symbol == "S" and AARIZ29[26].symbol == "N`" and AARIZ29[28].symbol == "Sn"


def test_isbi_to_aariz_maps_all_19_by_name_and_leaves_10_aariz_only():
    pairs = map_by_name(ISBI19, AARIZ29)
    assert len(pairs) == 19
    for i, j in pairs:
        assert ISBI19[i].name == AARIZ29[j].name
    # Same symbol on both sides for every mapped landmark (a check independent of the canonical names).
    assert all(ISBI19[i].symbol == AARIZ29[j].symbol for i, j in pairs)
    mapped = {j for _, j in pairs}
    aariz_only = sorted(AARIZ29[j].symbol for j in range(29) if j not in mapped)
    assert aariz_only == sorted(["Pn", "R", "Co", "LPM", "LMT", "UPM", "UIA", "UMT", "LIA", "N`"])
    # Sella: ISBI #1 (index 0) <-> Aariz index 10: by name, not by position.
    assert (0, 10) in pairs


def test_cldetection_first_19_are_isbi():
    assert map_by_name(ISBI19, CLDETECTION38) == [(i, i) for i in range(19)]


def test_lookup_by_symbol_id_and_unknowns():
    assert AARIZ29.lookup("ckr6rysye3jz00y30fzx36g43").name == "sella"
    assert AARIZ29.lookup("Pog`").name == "soft_tissue_pogonion"
    with pytest.raises(KeyError):
        AARIZ29.lookup("XYZ")
    with pytest.raises(ValueError, match="valid"):
        get_catalogue("nope")


def test_user_catalogue_from_params_maps_by_name():
    cat = catalogue_from_params(
        {"key": "clinic", "landmarks": [{"like": "isbi19:nasion"}, {"like": "isbi19:sella"}, {"name": "my_point"}]}
    )
    assert cat.names == ["nasion", "sella", "my_point"]
    assert map_by_name(cat, AARIZ29) == [(0, 4), (1, 10)]  # ordered by target index
    with pytest.raises(ValueError, match="duplicated"):
        catalogue_from_params([{"name": "a"}, {"name": "a", "symbol": "b"}])
