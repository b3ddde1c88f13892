"""Every wire type round-trips through msgpack and JSON, decoded by its union's decoder."""

import inspect

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.domain import messages as m

INT = st.integers(min_value=-(2**53), max_value=2**53)


def strategy(t: mi.Type) -> st.SearchStrategy:
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**53))
        hi = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**53)
        return st.integers(min_value=lo, max_value=hi)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.StrType):
        return st.text(min_size=t.min_length or 0, max_size=t.max_length if t.max_length is not None else 20)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of([strategy(x) for x in t.types])
    if isinstance(t, mi.ListType):
        return st.lists(strategy(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy(t.key_type), strategy(t.value_type), max_size=3)
    if isinstance(t, mi.StructType):
        return st.builds(t.cls, **{f.name: strategy(f.type) for f in t.fields})
    raise NotImplementedError(t)


COMMANDS = [*m.MARKET_COMMANDS, *m.WALLET_COMMANDS]
EVENTS = [*m.MARKET_EVENTS, *m.WALLET_EVENTS]
CASES = (
    [(cls, m.command_json, m.command_msgpack) for cls in COMMANDS]
    + [(cls, m.event_json, m.event_msgpack) for cls in EVENTS]
    + [(m.CommandResult, m.result_json, m.result_msgpack)]
)


@pytest.mark.parametrize(("cls", "json_decoder", "msgpack_decoder"), CASES, ids=[c[0].__name__ for c in CASES])
@settings(max_examples=40)
@given(data=st.data())
def test_wire_type_round_trips(cls, json_decoder, msgpack_decoder, data):
    value = data.draw(strategy(mi.type_info(cls)), label=cls.__name__)
    assert json_decoder.decode(m.json_encoder.encode(value)) == value
    assert msgpack_decoder.decode(m.msgpack_encoder.encode(value)) == value


def test_every_wire_type_is_frozen_keyword_only_and_tagged_by_its_name():
    for cls in [*COMMANDS, *EVENTS, m.CommandResult, m.InstructionReport]:
        config = cls.__struct_config__
        assert config.frozen and config.tag_field == "type" and config.tag == cls.__name__
        params = inspect.signature(cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls


def test_a_json_body_decodes_into_the_right_command():
    body = (
        b'{"type":"PlaceOrders","command_id":"c1","market_id":"1.1","player_id":"p",'
        b'"instructions":[{"runner_id":11,"side":"BACK","price":"3.05","size":200}]}'
    )
    cmd = m.command_json.decode(body)
    assert isinstance(cmd, m.PlaceOrders) and cmd.instructions[0].persistence == "LAPSE"
    with pytest.raises(msgspec.ValidationError):
        m.command_json.decode(body.replace(b'"BACK"', b'"BUY"'))
