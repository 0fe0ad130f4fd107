"""Conversation shapes for the differential conformance tests (synthetic content, real-world structure)."""

from __future__ import annotations

from typing import Any


def get_weather(city: str, unit: str = "celsius"):
    """
    Get the current weather in a city.

    Args:
        city: The city name, e.g. Paris.
        unit: The temperature unit (choices: ["celsius", "fahrenheit"])
    """


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone.",
             "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


def _call(name: str, args: Any, cid: str = "call_1") -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


SYSTEM = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "Paris."}
U2 = {"role": "user", "content": "And of Italy?"}
A2 = {"role": "assistant", "content": "Rome."}
CALL = {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", {"city": "Paris"})]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp_c": 21}'}

# name -> (messages, render kwargs)
SHAPES: dict[str, tuple[list[dict], dict]] = {
    "single_user": ([U1], {}),
    "system_first": ([SYSTEM, U1], {}),
    "multi_turn": ([U1, A1, U2], {}),
    "multi_turn_system": ([SYSTEM, U1, A1, U2, A2, U1], {}),
    "assistant_last": ([U1, A1], {}),
    "continue_final": ([U1, {"role": "assistant", "content": "The capital is"}], {"continue_final_message": True}),
    "continue_with_gen_prompt": ([U1, A1], {"continue_final_message": True, "add_generation_prompt": True}),
    "continue_on_user": ([U1], {"continue_final_message": True}),
    "tools": ([U1], {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    "tools_python_function": ([U1], {"tools": [get_weather]}),
    "tool_call_and_result": ([U1, CALL, RESULT], {"tools": [WEATHER_TOOL]}),
    "tool_call_then_answer": ([U1, CALL, RESULT, {"role": "assistant", "content": "It is 21 °C."}], {"tools": [WEATHER_TOOL]}),
    "parallel_tool_calls": ([U1, {"role": "assistant", "content": "", "tool_calls": [
        _call("get_weather", {"city": "Paris"}), _call("get_time", {"tz": "Europe/Paris"}, "call_2")]},
        RESULT, {"role": "tool", "tool_call_id": "call_2", "name": "get_time", "content": "12:00"}],
        {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    "tool_args_as_string": ([U1, {"role": "assistant", "tool_calls": [_call("get_weather", '{"city": "Paris"}')]},
                             RESULT], {"tools": [WEATHER_TOOL]}),
    "unicode_emoji": ([{"role": "user", "content": "Ça va? 你好 👋🏽 — naïve café ∑ \u200d"},
                       {"role": "assistant", "content": "Très bien 😀"}, {"role": "user", "content": "ありがとう"}], {}),
    "empty_content": ([{"role": "user", "content": ""}], {}),
    "empty_assistant": ([U1, {"role": "assistant", "content": ""}, U2], {}),
    "reasoning_in_history": ([U1, {"role": "assistant", "content": "Paris.", "reasoning_content": "France's capital is Paris."},
                              U2], {}),
    "thinking_field": ([U1, {"role": "assistant", "content": "Paris.", "thinking": "Easy one."}, U2], {}),
    "think_tags_in_content": ([U1, {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nParis."}, U2], {}),
    "content_parts": ([{"role": "user", "content": [{"type": "text", "text": "Describe this."}]}], {}),
    "documents": ([U1], {"documents": [{"title": "Atlas", "text": "Paris is the capital of France."}]}),
    "enable_thinking_false": ([U1], {"enable_thinking": False}),
    "reasoning_effort_high": ([SYSTEM, U1], {"reasoning_effort": "high"}),
    "custom_kwargs": ([U1], {"date_string": "01 Jan 2026", "builtin_tools": ["code_interpreter"]}),
    "braces_and_quotes": ([{"role": "user", "content": "Render {{ x }} and {% raw %} and \"quotes\" and 'single'\n\tTabs"}], {}),
    "consecutive_users": ([U1, U2], {}),
    "system_only": ([SYSTEM], {}),
    "assistant_first": ([A1, U1], {}),
    "empty_conversation": ([], {}),
    "developer_role": ([{"role": "developer", "content": "Be brief."}, U1], {}),
}
