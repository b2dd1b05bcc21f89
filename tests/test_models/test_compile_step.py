"""CompiledStep: fullgraph compilation that counts its graphs."""
import pytest
import torch

from flsl_mm.models.utils.compile_step import CompiledStep, build_compiled_step


def test_counts_compilations_and_warns_at_a_recompilation(mmlogger_messages):
    step = CompiledStep(lambda x, t: (x * t).softmax(-1), backend='eager')
    for t in (0.04, 0.05, 0.06):  # a schedule as a tensor: one graph
        step(torch.ones(2, 3), torch.tensor(t))
    assert step.compiles == 1
    step(torch.ones(4, 3), torch.tensor(0.07))  # a new static shape
    assert step.compiles == 2
    assert any('graph 2 compiled' in m and 'recompilation' in m
               for m in mmlogger_messages)


def test_a_graph_break_is_an_error():
    def breaks(x):
        if x.sum() > 0:  # Python control flow on a device value: a graph break
            return x * 2
        return x
    step = CompiledStep(breaks, backend='eager')
    with pytest.raises(Exception, match='(?i)graph break|unsupported|Data-dependent'):
        step(torch.ones(3))


def test_config_values_are_checked():
    assert build_compiled_step(lambda x: x, False) is None
    assert isinstance(build_compiled_step(lambda x: x, dict(backend='eager')),
                      CompiledStep)
    with pytest.raises(ValueError, match="unknown keys \\['fullgraph'\\]"):
        build_compiled_step(lambda x: x, dict(fullgraph=False))
    with pytest.raises(ValueError, match="inductor's"):
        build_compiled_step(lambda x: x, dict(backend='eager', mode='max-autotune'))
