"""A terminal conversation with the agent about one task.

The graph pauses (LangGraph interrupts) at two kinds of points and this loop
answers them from the user's input:

- before a reward spec is used: approve it, edit it (the JSON, as the tool
  arguments), reject it with a comment for the teacher, or stop;
- after a teacher reply without a tool call, and after each optimize or verify
  result: say something to the teacher (a question, "run 10 more steps", ...),
  press Enter to let it continue, or stop.

Commands at the `you>` prompt: `/stop` ends the run (exit `user_stop`, the
best video is kept), `/spec` shows the current spec, `/quit` leaves without
ending: the run resumes from its checkpoint next time. With an LLM endpoint
any other text is a free message; the offline teacher understands "more N",
"verify", "accept", and answers anything else with its reading of the task.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.run import AgentSession

Ask = Callable[[str], str]
Show = Callable[[str], None]

REVIEW_HELP = "[a]pprove, [e]dit, [r]eject, [s]top"


def _review(question: dict[str, Any], ask: Ask, show: Show) -> dict[str, Any]:
    show(f"The teacher wants to {question['tool']} with:")
    show(json.dumps(question["arguments"], indent=2))
    while True:
        choice = ask(f"spec: {REVIEW_HELP}> ").strip().lower()
        if choice in ("", "a", "approve"):
            return {"verdict": "approve"}
        if choice in ("s", "stop", "/stop"):
            return {"verdict": "stop"}
        if choice in ("r", "reject"):
            return {"verdict": "reject", "text": ask("why (for the teacher)> ").strip()}
        if choice in ("e", "edit"):
            text = ask("edited spec as one JSON object> ").strip()
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as err:
                show(f"not valid JSON ({err.msg}); try again")
                continue
            if not isinstance(parsed, dict):
                show("the spec must be a JSON object; try again")
                continue
            return {"verdict": "edit", "arguments": json.dumps(parsed)}
        show(f"answer one of: {REVIEW_HELP}")


def _chat(session: AgentSession, ask: Ask, show: Show) -> dict[str, Any] | None:
    """The user's turn; None means /quit (leave the run paused)."""
    while True:
        text = ask("you> ").strip()
        if text == "/quit":
            return None
        if text == "/stop":
            return {"action": "stop", "text": "stopped by the user"}
        if text == "/spec":
            specs = session.state().get("specs") or []
            show(json.dumps(specs[-1]["spec"], indent=2) if specs else "no spec yet")
            continue
        if not text:
            return {"action": "continue"}
        return {"action": "message", "text": text}


def chat_loop(session: AgentSession, ask: Ask, show: Show) -> bool:
    """Drive a session to its end from user input; False if the user left with /quit."""
    question = session.advance()
    while question is not None:
        if question["kind"] == "review_spec":
            answer: dict[str, Any] | None = _review(question, ask, show)
        else:
            answer = _chat(session, ask, show)
            if answer is None:
                return False
        question = session.advance(resume=answer)
    return True
