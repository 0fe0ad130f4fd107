"""Model sources and bad input: one-line errors naming the file and the fix; untrusted templates are contained."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

import turnspec
from turnspec.errors import ModelSourceError, NoChatTemplateError, TemplateError


def _copy_model(smollm2_dir, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(smollm2_dir, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_missing_path_is_a_one_line_error():
    with pytest.raises(ModelSourceError, match="no such file or folder") as err:
        turnspec.load("/nonexistent/model")
    assert "\n" not in str(err.value)


def test_corrupt_tokenizer_config_names_the_file(smollm2_dir, tmp_path):
    model = _copy_model(smollm2_dir, tmp_path)
    (model / "tokenizer_config.json").write_text('{"bos_token": "<s>",,}')
    with pytest.raises(ModelSourceError, match=r"tokenizer_config.json: invalid JSON at line 1") as err:
        turnspec.load(model)
    assert "\n" not in str(err.value)


def test_base_model_without_template_says_how_to_pass_one(smollm2_dir, tmp_path):
    model = _copy_model(smollm2_dir, tmp_path)
    (model / "chat_template.jinja").unlink()
    with pytest.raises(NoChatTemplateError, match="--template FILE"):
        turnspec.load(model)
    template = tmp_path / "my.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    spec = turnspec.load(model, template=template)
    assert spec.render([{"role": "user", "content": "hi"}]) == "[user] hi\n"


def test_named_templates_pick_tool_use_when_tools_are_given(smollm2_dir, tmp_path):
    model = _copy_model(smollm2_dir, tmp_path)
    (model / "chat_template.jinja").unlink()
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": "plain:{{ messages[0]['content'] }}"},
                               {"name": "tool_use", "template": "tools:{{ tools | length }}"}]
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    spec = turnspec.load(model)
    msgs = [{"role": "user", "content": "hi"}]
    assert spec.render(msgs) == "plain:hi"
    assert spec.render(msgs, tools=[{"type": "function", "function": {"name": "f"}}]) == "tools:1"
    assert spec.render(msgs, chat_template="tool_use", tools=[]) == "tools:0"


def test_template_error_names_model_and_message(smollm2_dir):
    spec = turnspec.load(smollm2_dir, template="{{ raise_exception('Conversation roles must alternate') }}")
    with pytest.raises(TemplateError, match=r"smollm2-135m-instruct raised: Conversation roles must alternate"):
        spec.render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("source, what", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "time limit"),
    ("{% set s = 'x' * 100000000 %}{{ s }}", "size limit"),
    ("{% for i in range(1000) %}{{ 'y' * 1000 }}{% endfor %}", "more than"),
])
def test_runaway_templates_are_stopped(source, what):
    spec = turnspec.from_template(source)
    spec.limits = turnspec.spec.RenderLimits(time_limit_s=0.5, max_output_chars=100_000)
    t0 = time.monotonic()
    with pytest.raises(TemplateError, match=what):
        spec.render([{"role": "user", "content": "x"}])
    assert time.monotonic() - t0 < 10


def test_sandbox_blocks_python_internals():
    spec = turnspec.from_template("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        spec.render([{"role": "user", "content": "x"}])
    spec = turnspec.from_template("{% set ns = namespace() %}{% set ns._x = 1 %}")
    with pytest.raises(TemplateError, match="underscore"):
        spec.render([{"role": "user", "content": "x"}])


def test_import_turnspec_is_light():
    code = ("import sys, turnspec; heavy = [m for m in ('transformers', 'torch', 'llama_cpp', 'mlx', 'jinja2', "
            "'tokenizers', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_huge_range_in_a_template_is_a_template_error_not_a_traceback():
    """Synthetic template: range(10**9) is refused (jinja's own cap of 100,000 items), as one of turnspec's limits."""
    spec = turnspec.from_template("{% for i in range(10**9) %}x{% endfor %}", name="synthetic-huge-range")
    with pytest.raises(TemplateError) as info:
        spec.render([{"role": "user", "content": "hi"}])
    assert "range of more than 100000 items" in info.value.template_message and info.value.limit


def test_a_template_stopped_by_the_time_limit_says_so():
    from turnspec.template import RenderLimits

    spec = turnspec.from_template("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                                  name="synthetic-endless", limits=RenderLimits(time_limit_s=0.3))
    t0 = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        spec.render([{"role": "user", "content": "hi"}])
    assert info.value.limit and "time limit" in info.value.template_message
    assert time.perf_counter() - t0 < 5


def test_template_variables_lists_the_template_s_own_switches():
    from turnspec.template import template_variables

    source = ("{% set x = 1 %}{% if enable_thinking is defined and not enable_thinking %}no{% endif %}"
              "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ reasoning_effort or 'medium' }}")
    assert template_variables(source) == ["enable_thinking", "reasoning_effort"]


@pytest.mark.parametrize("expression", ["messages.append('x')", "messages[0].update({'role': 'x'})",
                                        "messages[0].content.__class__.__subclasses__()", "loop_fn.__globals__.keys()"])
def test_the_sandbox_refuses_unsafe_access_every_time(expression):
    """Synthetic templates: the per-(type, name) verdict cache must refuse the second access as it did the first."""
    spec = turnspec.from_template("{% set loop_fn = raise_exception %}{{ " + expression + " }}", name="synthetic-unsafe")
    for _ in range(2):
        with pytest.raises(TemplateError):
            spec.render([{"role": "user", "content": "hi"}])
