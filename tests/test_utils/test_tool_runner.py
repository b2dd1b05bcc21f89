import pytest

from flsl_mm.utils.tool_runner import last_checkpoint, run_tool


def test_run_tool_logs_and_times(tmp_path):
    script = tmp_path / 'ok.py'
    script.write_text('import os, sys\nprint("cuda=" + os.environ.get('
                      '"CUDA_VISIBLE_DEVICES", "unset"))\nprint("err", file=sys.stderr)\n')
    out, secs = run_tool([str(script)], tmp_path / 'ok.log', tmp_path, cpu_only=True)
    assert out.splitlines() == ['cuda=', 'err']  # GPU hidden, stderr captured
    assert (tmp_path / 'ok.log').read_text() == out and secs > 0


def test_run_tool_failure_names_command_and_log(tmp_path):
    script = tmp_path / 'bad.py'
    script.write_text('print("last words")\nraise SystemExit(3)\n')
    with pytest.raises(SystemExit, match=r'failed \(3\).*bad\.py\nlog: .*bad\.log\n'
                                         r'last words'):
        run_tool([str(script)], tmp_path / 'bad.log', tmp_path)


def test_last_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='saved no checkpoint'):
        last_checkpoint(tmp_path)
    (tmp_path / 'last_checkpoint').write_text('/x/epoch_3.pth\n')
    assert str(last_checkpoint(tmp_path)) == '/x/epoch_3.pth'
