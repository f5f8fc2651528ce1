"""The judge's rubric and prompt: Prometheus-style absolute grading on a 1-5 scale.

The judge sees the instruction, the response to grade and a reference answer that deserves a 5,
then a rubric over eight dimensions (seed 000's table: Instruction Following, Accuracy, Relevance,
Completeness, Depth, Clarity, Creativity, Helpfulness). In that table every dimension shares the
same holistic level descriptions, so the rubric here lists what each dimension means once and then
five overall levels; the wording is ours. The judge is asked for feedback first and a final line
``[RESULT] n`` with an integer ``n`` in 1..5 (parsed by :mod:`delift.evaluation.judge.parsing`).

Messages are plain ``{"role", "content"}`` dicts, the format of chat templates and of the
OpenAI chat-completions API. ``system_message=False`` (the default in ``conf/judge``) folds the
system text into the user turn, because some chat templates (Mistral's, which the paper's
Prometheus judge uses) accept no system role.
"""

from __future__ import annotations

DIMENSIONS: dict[str, str] = {
    "Instruction Following": "does what the instruction asks, in the form it asks for",
    "Accuracy": "states facts, numbers and reasoning correctly, with no invented claims",
    "Relevance": "stays on the question and leaves out material that does not serve it",
    "Completeness": "covers every part of the request that the reference answer covers",
    "Depth": "explains why, not only what, where the task calls for it",
    "Clarity": "is easy to follow: well ordered, precise wording, no confusing repetition",
    "Creativity": "brings a fitting original touch when the task is open-ended",
    "Helpfulness": "would actually serve the person who gave the instruction",
}

LEVELS: dict[int, str] = {
    1: "Poor on nearly every dimension: it ignores or misreads the instruction, is largely wrong or "
       "off-topic, and leaves the user with nothing usable.",
    2: "Weak on several dimensions: it attempts the instruction only in part, has serious errors or "
       "gaps, wanders from the question, and is shallow or hard to follow.",
    3: "Acceptable but uneven: it carries out the instruction, yet some dimensions fall short, for "
       "example a mistake, a missing part, little depth or unclear passages.",
    4: "Good on most dimensions: it follows the instruction closely, is correct and on-topic, "
       "reasonably thorough and well organised; only small improvements remain.",
    5: "Excellent on all or nearly all dimensions: it does exactly what was asked, is correct, "
       "focused, complete and insightful, clearly written, inventive where that fits, and fully "
       "meets the user's need.",
}

SCORE_MIN, SCORE_MAX = 1, 5

SYSTEM_TEXT = ("You grade answers written by an AI assistant. You are strict, consistent and fair, "
               "and you judge only against the rubric you are given.")

TASK_TEXT = (
    "You are shown an instruction (it may include input text), a response to evaluate, a reference "
    "answer that would earn a score of 5, and a score rubric.\n"
    "1. Write short feedback that assesses the response strictly against the rubric, considering "
    "every dimension; do not judge in general terms.\n"
    "2. Then give one integer score from 1 to 5 taken from the rubric's levels.\n"
    "3. Write the feedback first and finish with a line of the form \"Feedback: (your feedback) "
    "[RESULT] (an integer from 1 to 5)\".\n"
    "4. Write nothing else: no greeting, no closing remarks, no further explanation after the score."
)


def rubric_text() -> str:
    """The score rubric: the eight dimensions with their meaning, then the five levels."""
    lines = ["[How good is the response on these dimensions together?]"]
    lines += [f"- {name}: {meaning}" for name, meaning in DIMENSIONS.items()]
    lines += [f"Score {level}: {text}" for level, text in LEVELS.items()]
    return "\n".join(lines)


def instruction_text(instruction: str, input_text: str | None = None) -> str:
    """What the judge is told the task was: the instruction, then its input when there is one."""
    instruction = instruction.strip()
    if input_text and input_text.strip():
        return f"{instruction}\n\nInput:\n{input_text.strip()}"
    return instruction


def build_prompt(instruction: str, response: str, reference: str) -> str:
    """The user-turn text for one example (the judge's whole task apart from the system text)."""
    return (
        "###Task Description:\n"
        f"{TASK_TEXT}\n\n"
        "###The instruction to evaluate:\n"
        f"{instruction}\n\n"
        "###Response to evaluate:\n"
        f"{response}\n\n"
        "###Reference Answer (Score 5):\n"
        f"{reference}\n\n"
        "###Score Rubrics:\n"
        f"{rubric_text()}\n\n"
        "###Feedback: "
    )


def build_messages(instruction: str, response: str, reference: str,
                   system_message: bool = False) -> list[dict[str, str]]:
    """Chat messages for one example; with ``system_message=False`` a single user turn."""
    prompt = build_prompt(instruction, response, reference)
    if system_message:
        return [{"role": "system", "content": SYSTEM_TEXT}, {"role": "user", "content": prompt}]
    return [{"role": "user", "content": f"{SYSTEM_TEXT}\n\n{prompt}"}]


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """One text for a model without a chat template: the message contents, in order."""
    return "\n\n".join(message["content"] for message in messages)
