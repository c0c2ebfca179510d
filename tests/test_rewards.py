"""The GRPO reward sandbox: parsing, the TRL-facing callables, and containment of misbehaving reward code."""

from __future__ import annotations

import socket
import textwrap
import uuid

import pytest

from godminer.training.rewards import RewardSpec, SandboxedRewards, column_args, load_specs

GOOD = '''
def good(completions, prompts=None, extra_data=None, **kwargs):
    """Length of the completion plus the length of its extra_data (validator-style column)."""
    return [float(len(c) + len(extra or "")) for c, extra in zip(completions, extra_data or [None] * len(completions))]
'''

# name -> (source, failure kind the report must show)
BAD = {
    "boom": ("def boom(completions, **kwargs):\n    raise RuntimeError('boom')\n", "exception"),
    "short": ("def short(completions, **kwargs):\n    return [1.0]\n", "bad_shape"),
    "text": ("def text(completions, **kwargs):\n    return ['high' for _ in completions]\n", "bad_shape"),
    "nothing": ("def nothing(completions, **kwargs):\n    return None\n", "bad_shape"),
    "infinite": ("def infinite(completions, **kwargs):\n    return [float('inf')] * len(completions)\n", "bad_shape"),
    "quit": ("def quit(completions, **kwargs):\n    import os\n    os._exit(3)\n", "crashed"),
    "segfault": ("def segfault(completions, **kwargs):\n    import ctypes\n    ctypes.string_at(0)\n", "crashed"),
    "missing": ("def missing(completions, **kwargs):\n    import textstat_not_installed_anywhere\n", "exception"),
    "spin": ("def spin(completions, **kwargs):\n    while True:\n        pass\n", "timeout"),
    "hog": ("def hog(completions, **kwargs):\n    kept = []\n    while True:\n        kept.append(bytearray(10**8))\n",
            "memory"),
    "sneaky": ("def sneaky(completions, **kwargs):\n    import os\n    os.system('true')\n", "exception"),
}

NET = '''
def net(completions, port=None, **kwargs):
    import socket
    socket.create_connection(("127.0.0.1", port[0]), timeout=1).close()
    return [1.0] * len(completions)
'''

RAW_NET = '''
def raw_net(completions, port=None, **kwargs):
    import ctypes, struct
    libc = ctypes.CDLL(None)
    fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM, straight through libc: no audit event
    address = struct.pack("<H", 2) + struct.pack("!H", port[0]) + bytes([127, 0, 0, 1]) + bytes(8)
    return [float(fd >= 0 and libc.connect(fd, address, 16) == 0)] * len(completions)
'''

SNOOP = '''
def snoop(completions, secret_path=None, **kwargs):
    import os
    seen = [os.environ.get("GODMINER_HUB__TOKEN", ""), os.environ.get("HF_TOKEN", ""), repr(dict(os.environ))]
    for path in (secret_path[0], f"/proc/{os.getppid()}/environ"):
        try:
            with open(path) as handle:
                seen.append(handle.read())
        except OSError:
            pass
    return [float(sum(len(text) for text in seen[:2]) + sum("s3cr3t" in text for text in seen))] * len(completions)
'''

READ_SECRET = '''
def read_secret(completions, secret_path=None, **kwargs):
    return [float(len(open(secret_path[0]).read()))] * len(completions)
'''

RAW_READ = '''
def raw_read(completions, secret_path=None, **kwargs):
    import ctypes
    fd = ctypes.CDLL(None).open(secret_path[0].encode(), 0)  # O_RDONLY via libc: no audit event
    return [float(fd >= 0)] * len(completions)
'''


def spec(source: str, weight: float = 1.0) -> RewardSpec:
    return load_specs([{"reward_func": textwrap.dedent(source), "reward_weight": weight}])[0]


def by_name(rewards: SandboxedRewards, name: str):
    return next(function for function in rewards.functions() if function.__name__ == name)


@pytest.fixture(scope="module")
def sandbox():
    specs = [spec(GOOD), spec(NET), spec(RAW_NET)] + [spec(source) for source, _kind in BAD.values()]
    with SandboxedRewards(specs, timeout_s=2.5, warmup_timeout_s=2.5, memory_mb=512) as rewards:
        yield rewards


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.3)
    yield server
    server.close()


def test_load_specs_parses_the_protocol_example():
    source = ("def reward_long_completions(completions, **kwargs):\n"
              "    \"\"\"Reward function that gives higher scores to longer completions.\"\"\"\n"
              "    return [float(len(completion)) for completion in completions]")
    (parsed,) = load_specs([{"reward_id": "0f8e", "reward_func": source, "reward_weight": 0.6171, "is_manual": True}])
    assert parsed == RewardSpec("reward_long_completions", source, 0.6171)
    assert column_args(parsed) == []


def test_column_args_are_the_dataset_columns():
    assert column_args(spec("def f(completions, prompts, extra_data, **kwargs):\n    return []\n")) == ["extra_data"]
    helper_first = spec("def helper(x):\n    return x\n\ndef main(completions, answer, *, trainer_state=None):\n"
                        "    pass\n")
    assert helper_first.name == "helper"  # the validator names a function by its first `def`
    assert column_args(helper_first) == ["x"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"reward_func": "x = 1", "reward_weight": 1.0}, "no top-level 'def'"),
    ({"reward_func": "def broken(:", "reward_weight": 1.0}, "not valid Python"),
    ({"reward_func": "class C:\n    def f(self): pass", "reward_weight": 1.0}, "no top-level 'def'"),
    ({"reward_weight": 1.0}, "'reward_func'"),
    ({"reward_func": "def f(completions): pass", "reward_weight": -1}, "'reward_weight'"),
    ({"reward_func": "def f(completions): pass"}, "'reward_weight'"),
])
def test_load_specs_rejects_bad_entries(entry, message):
    with pytest.raises(ValueError, match=message):
        load_specs([entry])


def test_functions_and_weights_keep_the_spec_order():
    specs = load_specs([{"reward_func": GOOD, "reward_weight": w} for w in (0.5, 0.3)]
                       + [{"reward_func": BAD["boom"][0], "reward_weight": 0.2}])
    rewards = SandboxedRewards(specs)  # nothing starts before the first call
    assert [f.__name__ for f in rewards.functions()] == ["good", "good_2", "boom"]
    assert rewards.weights() == [0.5, 0.3, 0.2]


def test_good_function_through_a_grpo_trainer_style_call(sandbox):
    good = by_name(sandbox, "good")
    values = good(prompts=["p1", "p2"], completions=["abc", "de"], completion_ids=[[1, 2, 3], [4, 5]],
                  trainer_state=object(), log_extra=print, log_metric=print, extra_data=["xy", ""])
    assert values == [5.0, 2.0]
    conversational = [[{"role": "assistant", "content": "hi"}], [{"role": "assistant", "content": "hello"}]]
    assert good(prompts=None, completions=conversational) == [1.0, 1.0]


@pytest.mark.parametrize("name", list(BAD))
def test_misbehaving_function_is_contained_and_reported(sandbox, name):
    before = sandbox.report()[name]["failures"].get(BAD[name][1], 0)
    assert by_name(sandbox, name)(prompts=["p", "q"], completions=["a", "b"]) == [None, None]
    report = sandbox.report()[name]
    assert report["failures"][BAD[name][1]] == before + 1
    assert report["last_error"]
    assert by_name(sandbox, "good")(completions=["abcd"]) == [4.0]  # the other functions still work


def test_errors_say_what_happened(sandbox):
    report = sandbox.report()
    assert "code 3" in report["quit"]["last_error"]
    assert "Segmentation fault" in report["segfault"]["last_error"]
    assert "ModuleNotFoundError" in report["missing"]["last_error"]
    assert "os.system" in report["sneaky"]["last_error"]


def test_none_and_nan_entries_pass_through_as_none():
    partial = spec("def partial(completions, **kwargs):\n    return [None, float('nan'), 2, True]\n")
    with SandboxedRewards([partial], timeout_s=1.5, warmup_timeout_s=1.5) as rewards:
        assert rewards.functions()[0](completions=["a", "b", "c", "d"]) == [None, None, 2.0, 1.0]


def test_numpy_results_become_numbers():
    pytest.importorskip("numpy")
    arrays = spec("def arrays(completions, **kwargs):\n    import numpy\n"
                  "    return numpy.arange(len(completions), dtype=numpy.float32)\n")
    with SandboxedRewards([arrays], timeout_s=5, warmup_timeout_s=20) as rewards:
        assert rewards.functions()[0](completions=["a", "b"]) == [0.0, 1.0]


def test_network_is_denied(sandbox, listener):
    port = listener.getsockname()[1]
    assert by_name(sandbox, "net")(completions=["a"], port=[port]) == [None]
    assert "reward sandbox: socket" in sandbox.report()["net"]["last_error"]
    with pytest.raises(TimeoutError):
        listener.accept()


def test_network_is_denied_below_python_too(sandbox, listener):
    isolation = sandbox.isolation()
    if not (isolation["network_namespace"] or isolation["landlock_abi"] >= 4):
        pytest.skip("neither a network namespace nor Landlock TCP rules on this kernel")
    assert by_name(sandbox, "raw_net")(completions=["a"], port=[listener.getsockname()[1]]) == [0.0]
    with pytest.raises(TimeoutError):
        listener.accept()


def test_secrets_are_out_of_reach(tmp_path, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("GODMINER_HUB__TOKEN", secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(secret)
    columns = {"secret_path": [str(secret_file)]}
    with SandboxedRewards([spec(SNOOP), spec(READ_SECRET), spec(RAW_READ)], timeout_s=1.5,
                          warmup_timeout_s=1.5) as rewards:
        snoop, read_secret, raw_read = rewards.evaluate(["p"], ["a"], columns)
        report = rewards.report()
        landlock = rewards.isolation()["landlock_abi"]
    assert snoop == [0.0]  # no token in the environment, the file and the parent's environ unreadable
    assert read_secret == [None]
    assert "PermissionError" in report["read_secret"]["last_error"]
    assert raw_read == ([0.0] if landlock else [1.0])  # below Python only Landlock stops a read
    assert secret not in repr(report)


def test_failures_while_loading_are_contained():
    sources = ["x = 1 / 0\ndef divide(completions, **kwargs):\n    return [0.0] * len(completions)\n",
               "while True:\n    pass\ndef stuck(completions, **kwargs):\n    return [0.0] * len(completions)\n",
               GOOD]
    with SandboxedRewards([spec(s) for s in sources], timeout_s=1, warmup_timeout_s=1) as rewards:
        divide, stuck, good = rewards.evaluate(None, ["ab"])
        report = rewards.report()
    assert (divide, stuck, good) == ([None], [None], [2.0])
    assert report["divide"]["failures"] == {"load": 1}
    assert "ZeroDivisionError" in report["divide"]["last_error"]
    assert "timeout" in report["stuck"]["last_error"]


def test_after_everything_the_same_sandbox_still_scores(sandbox):
    assert by_name(sandbox, "good")(prompts=["p"], completions=["xyz"], extra_data=["1"]) == [4.0]
    report = sandbox.report()
    assert report["good"]["failures"] == {}
    assert report["good"]["mean_latency_s"] > 0
    assert all(report[name]["calls"] >= 1 for name in BAD)
