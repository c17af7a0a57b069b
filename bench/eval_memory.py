"""Memory search evaluation: recall@5 of paraphrased questions, FTS alone vs. hybrid.

``data/memory_eval.json`` holds 50 notes, each the answer to one question worded differently
from it ("Dentist appointment moved to Thursday 4pm" / "when do I see the tooth doctor?").
They are mixed into a workspace of 170 generated notes on the same kinds of subjects (daily
logs, meetings, recipes, code snippets, people, travel, reading, projects), deterministic
for a given seed, then indexed with the real embedder and the default chunk settings.
A question counts as found when its note's file is among the first five results.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data" / "memory_eval.json"
WORK = ROOT / ".bench"
SEED = 20250314
K = 5

PEOPLE = ["Aisha", "Bram", "Chen", "Dario", "Elif", "Farid", "Hanna", "Ivo", "Julia", "Kofi"]
PEOPLE += ["Lena", "Marco", "Noor", "Olga", "Pieter", "Rosa", "Tomas", "Uma", "Vera", "Yusuf"]
PROJECTS = ["Atlas", "Beacon", "Comet", "Drift", "Ember", "Fjord", "Granite", "Harbor"]
COMPONENTS = ["the login form", "the CSV export", "the search page", "the invoice PDF"]
COMPONENTS += ["the mobile nav", "the settings API", "the cron worker", "the image resizer"]
BUGS = ["an off-by-one in pagination", "a timezone mix-up", "a race on startup"]
BUGS += ["an unescaped quote", "a stale cache entry", "a missing null check"]
STATUSES = ["is on track", "is blocked on design review", "needs another week"]
STATUSES += ["passed QA", "is waiting for legal", "has a flaky test suite"]
PLACES = ["canal", "river path", "old harbour", "park loop", "dunes", "city walls"]
RESTAURANTS = ["Bistro Lune", "Noodle Bar 8", "Cafe Central", "Taqueria Sol", "The Greenhouse"]
SMALLTALK = ["their new puppy", "a board game night", "moving house", "a cycling holiday"]
SMALLTALK += ["the football final", "a pottery class"]
WORK_TOPICS = ["the quarterly budget", "hiring a designer", "the on-call rota"]
WORK_TOPICS += ["the API versioning plan", "the customer churn report", "office move logistics"]
GROCERIES = ["leeks", "feta", "rice", "apples", "yoghurt", "spinach", "oats", "lemons"]
GROCERIES += ["chickpeas", "bread", "tofu", "peppers", "coffee beans", "olive oil"]
BOOKS = ["Piranesi", "The Dispossessed", "Thinking in Systems", "A Psalm for the Wild-Built"]
BOOKS += [
    "Four Thousand Weeks",
    "The Mythical Man-Month",
    "Braiding Sweetgrass",
    "Klara and the Sun",
]
FILMS = ["Perfect Days", "Past Lives", "Arrival", "Paddington 2", "The Farewell"]
BILLS = ["water", "phone", "council tax", "internet", "gym towel service"]
IDEAS = ["a script that renames scanned receipts by date", "a shared family calendar"]
IDEAS += ["a newsletter about small tools", "a weekend bread-baking club"]
IDEAS += ["a dashboard for plant watering", "a reading log with monthly summaries"]
WEATHER = ["grey and windy", "sunny but cold", "rain all day", "warm and humid", "foggy morning"]

DAILY_ENTRIES = [
    "Standup: {project} {status}.",
    "Lunch with {person} at {restaurant}; talked about {smalltalk}.",
    "Read {n} pages of {book}.",
    "Groceries: {g1}, {g2}, {g3}.",
    "Fixed a bug in {component}: {bug}.",
    "Walked {n} minutes along the {place}.",
    "Call with {person} about {work_topic}.",
    "Paid the {bill} bill.",
    "Watched {film} with {person}.",
    "Idea: {idea}.",
    "Weather {weather}.",
]

RECIPES = [
    ("Minestrone", "onion, carrot, celery, tinned tomatoes, borlotti beans, small pasta",
     "Soften the vegetables, add tomatoes and stock, simmer 25 minutes, add pasta at the end."),
    ("Greek salad", "tomatoes, cucumber, red onion, olives, feta, oregano",
     "Chop roughly, top with a slab of feta, dress with olive oil and oregano."),
    ("Chicken tikka", "chicken thighs, yoghurt, garam masala, ginger, garlic, lemon",
     "Marinate overnight, grill on skewers until charred at the edges."),
    ("Shakshuka", "eggs, peppers, onion, tinned tomatoes, cumin, paprika",
     "Cook the sauce 15 minutes, make wells, crack in the eggs, cover until just set."),
    ("Mushroom risotto", "arborio rice, mushrooms, shallot, white wine, parmesan, stock",
     "Toast the rice, add wine, then stock a ladle at a time for 18 minutes."),
    ("Pad thai", "rice noodles, tofu, eggs, tamarind, fish sauce, peanuts, bean sprouts",
     "Soak the noodles, stir-fry everything hot and fast, finish with lime."),
    ("Pumpkin soup", "pumpkin, onion, ginger, coconut milk, vegetable stock",
     "Roast the pumpkin, simmer with the rest, blend smooth."),
    ("Pancakes", "flour, milk, eggs, butter, pinch of salt",
     "Whisk, rest 30 minutes, cook thin in a hot buttered pan."),
    ("Chilli con carne", "beef mince, kidney beans, onion, chipotle, cumin, tomatoes",
     "Brown the mince, add everything else, simmer an hour, better the next day."),
    ("Tabbouleh", "bulgur, parsley, mint, tomatoes, lemon, spring onion",
     "Soak the bulgur, chop the herbs finely, dress with lemon and oil."),
    ("Apple crumble", "apples, butter, flour, oats, brown sugar, cinnamon",
     "Rub the topping, layer over sliced apples, bake 40 minutes."),
    ("Miso soup", "dashi, white miso, tofu, wakame, spring onion",
     "Warm the dashi, whisk in the miso off the boil, add tofu and wakame."),
    ("Falafel", "dried chickpeas, parsley, coriander, garlic, cumin",
     "Soak the chickpeas overnight, blitz with herbs, shape and fry."),
    ("Gazpacho", "tomatoes, cucumber, pepper, garlic, sherry vinegar, bread",
     "Blend everything with ice water, chill for two hours."),
    ("Carrot cake", "carrots, flour, eggs, brown sugar, walnuts, cream cheese",
     "Bake 35 minutes, frost with cream cheese once cool."),
]  # fmt: skip

SNIPPETS = [
    ("docker", "Remove stopped containers and dangling images", "docker system prune"),
    (
        "sql",
        "Find duplicate emails",
        "SELECT email, count(*) FROM users GROUP BY 1 HAVING count(*) > 1;",
    ),
    ("regex", "Match an ISO date", r"\d{4}-\d{2}-\d{2}"),
    ("jq", "Pull every id out of a JSON array", "jq '.[].id' data.json"),
    (
        "curl",
        "POST JSON with curl",
        "curl -X POST -H 'Content-Type: application/json' -d @body.json URL",
    ),
    ("systemd", "Follow a service's logs", "journalctl -u myservice -f"),
    ("tmux", "Detach and reattach", "Ctrl-b d, then tmux attach -t main"),
    ("rsync", "Mirror a folder to the NAS", "rsync -av --delete src/ nas:/volume1/src/"),
    ("find", "Delete files older than 30 days", "find /tmp/scratch -mtime +30 -delete"),
    ("awk", "Sum the third column", "awk '{ s += $3 } END { print s }' file.txt"),
    (
        "ffmpeg",
        "Cut a clip without re-encoding",
        "ffmpeg -ss 00:01:00 -to 00:02:00 -i in.mp4 -c copy out.mp4",
    ),
    ("pytest", "Run one test by name, stop at first failure", "pytest -x -k test_name"),
    ("make", "Print a variable from a Makefile", "make -pn | grep '^VAR'"),
    ("cron", "Every weekday at 7:30", "30 7 * * 1-5 /usr/local/bin/job.sh"),
    ("openssl", "Check a certificate's expiry", "openssl x509 -enddate -noout -in cert.pem"),
]

COMPANIES = ["Northwind", "Globex", "Initech", "Umbrella Labs", "Vandelay", "Hooli"]
ROLES = ["product manager", "data engineer", "designer", "support lead", "CTO", "recruiter"]
EVENTS = ["a meetup in Utrecht", "university", "a previous job", "the climbing trip", "a wedding"]
HOBBIES = ["sourdough", "trail running", "chess", "birdwatching", "sailing", "ceramics"]
DESTINATIONS = [
    ("Porto", "Livraria Lello, the Ribeira waterfront, port cellars in Gaia", "May or September"),
    ("Edinburgh", "Arthur's Seat, the Old Town closes, Leith for dinner", "late spring"),
    ("Kyoto", "Fushimi Inari at dawn, Philosopher's Path, Nishiki market", "November"),
    ("Copenhagen", "cycling everywhere, Reffen street food, Louisiana museum", "June"),
    ("Ljubljana", "Lake Bled day trip, the central market, castle hill", "early autumn"),
    ("Vancouver", "Stanley Park seawall, Granville Island, the North Shore trails", "August"),
    ("Marrakech", "the souks, Jardin Majorelle, a day in the Atlas foothills", "March"),
    ("Vienna", "coffee houses, the Naschmarkt, Schonbrunn gardens", "December markets"),
    ("Bergen", "Floyen funicular, Bryggen wharf, fjord cruise", "July"),
    ("Seville", "Real Alcazar, tapas in Triana, flamenco in a small pena", "April"),
]
TAKEAWAYS = [
    "Small daily habits compound more than big plans.",
    "Write down decisions with their reasons; memory rewrites them.",
    "Most delays come from waiting, not from working.",
    "Say no to good things to make room for great ones.",
    "A system's behaviour comes from its structure, not its parts.",
    "Adding people to a late project makes it later.",
]


def _daily_entry(rng: random.Random) -> str:
    g1, g2, g3 = rng.sample(GROCERIES, 3)
    return "- " + rng.choice(DAILY_ENTRIES).format(
        project=rng.choice(PROJECTS),
        status=rng.choice(STATUSES),
        person=rng.choice(PEOPLE),
        restaurant=rng.choice(RESTAURANTS),
        smalltalk=rng.choice(SMALLTALK),
        n=rng.randint(10, 60),
        book=rng.choice(BOOKS),
        g1=g1,
        g2=g2,
        g3=g3,
        component=rng.choice(COMPONENTS),
        bug=rng.choice(BUGS),
        place=rng.choice(PLACES),
        work_topic=rng.choice(WORK_TOPICS),
        bill=rng.choice(BILLS),
        film=rng.choice(FILMS),
        idea=rng.choice(IDEAS),
        weather=rng.choice(WEATHER),
    )


def _daily_log(day: date, rng: random.Random, extra: str | None = None) -> str:
    entries = [_daily_entry(rng) for _ in range(rng.randint(3, 6))]
    if extra is not None:
        entries.insert(rng.randint(1, len(entries) - 1), extra)
    return f"# {day.isoformat()}\n\n" + "\n".join(entries) + "\n"


def _meeting(project: str, day: date, rng: random.Random) -> str:
    people = rng.sample(PEOPLE, 3)
    points = [
        f"- {project} {rng.choice(STATUSES)}.",
        f"- Discussed {rng.choice(WORK_TOPICS)}; {rng.choice(people)} has concerns about scope.",
        f"- {rng.choice(COMPONENTS).capitalize()} has {rng.choice(BUGS)}; fix before the demo.",
        f"- Action: {people[0]} to write up {rng.choice(WORK_TOPICS)} by Friday.",
    ]
    rng.shuffle(points)
    return (
        f"# {project} sync, {day.isoformat()}\n\nAttendees: {', '.join(people)}\n\n"
        + "\n".join(points)
        + "\n"
    )


def generated_notes(seed: int, reserved: set[str]) -> dict[str, str]:
    """170 notes on the evaluation's subjects, none of them an answer to its questions and
    none at a ``reserved`` path."""
    rng = random.Random(seed)
    notes: dict[str, str] = {}
    start = date(2024, 9, 1)
    days = [start + timedelta(days=offset) for offset in range(300)]
    free = [day for day in days if f"memory/{day.isoformat()}.md" not in reserved]
    for day in rng.sample(free, 70):
        notes[f"memory/{day.isoformat()}.md"] = _daily_log(day, rng)
    for i in range(30):
        project, day = rng.choice(PROJECTS), start + timedelta(days=rng.randrange(300))
        notes[f"knowledge/meetings/{project.lower()}-{day.isoformat()}-{i}.md"] = _meeting(
            project, day, rng
        )
    for name, ingredients, method in RECIPES:
        slug = name.lower().replace(" ", "-")
        notes[f"knowledge/recipes/{slug}.md"] = (
            f"# {name}\n\nIngredients: {ingredients}.\n\n{method}\n"
        )
    for tool, what, command in SNIPPETS:
        notes[f"knowledge/code/{tool}.md"] = f"# {tool}\n\n{what}:\n\n    {command}\n"
    for person in rng.sample(PEOPLE, 12):
        notes[f"knowledge/people/{person.lower()}.md"] = (
            f"# {person}\n\nWorks at {rng.choice(COMPANIES)} as {rng.choice(ROLES)}.\n"
            f"Met at {rng.choice(EVENTS)}. Into {rng.choice(HOBBIES)}.\n"
        )
    for place, sights, season in DESTINATIONS:
        notes[f"knowledge/travel/{place.lower()}.md"] = (
            f"# {place} ideas\n\nSee: {sights}.\nBest time to go: {season}.\n"
        )
    for book in [*rng.sample(BOOKS, 8), "Deep Work", "Atomic Habits"]:
        slug = book.lower().replace(" ", "-").replace("'", "")
        notes[f"knowledge/reading/{slug}.md"] = (
            f"# {book}\n\nTakeaways:\n- {rng.choice(TAKEAWAYS)}\n- {rng.choice(TAKEAWAYS)}\n"
        )
    for project in PROJECTS:
        notes.setdefault(
            f"knowledge/projects/{project.lower()}-status.md",
            f"# {project} status\n\n{project} {rng.choice(STATUSES)}. Owner: {rng.choice(PEOPLE)}."
            f"\nNext milestone: {rng.choice(WORK_TOPICS)}.\n",
        )
    return notes


def build_workspace(root: Path, seed: int = SEED) -> list[dict[str, str]]:
    """Write the evaluation workspace under ``root``; return its cases (query, path)."""
    cases: list[dict[str, Any]] = json.loads(DATA.read_text())["cases"]
    notes = generated_notes(seed, {case["path"] for case in cases})
    rng = random.Random(seed + 1)
    for case in cases:
        path = case["path"]
        assert path not in notes, f"{path} is both an answer and a generated note"
        if case.get("daily"):
            day = date.fromisoformat(Path(path).stem)
            notes[path] = _daily_log(day, rng, extra=case["note"])
        else:
            notes[path] = case["note"] + "\n"
    for relative, text in notes.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return [{"query": case["query"], "path": case["path"]} for case in cases]


def held_out(i: int) -> bool:
    """Every third case and negative is held out: never used to tune weights or thresholds."""
    return i % 3 == 2


def evaluate(index: Any, cases: list[dict[str, str]], mode: str) -> dict[str, Any]:
    """Recall@K and mean reciprocal rank, with each case's rank (None: not in the top K) and
    the score of its note's best chunk (None: not in the top K)."""
    rows = []
    started = time.perf_counter()
    for i, case in enumerate(cases):
        results = index.search(case["query"], limit=K, mode=mode)
        found = list(dict.fromkeys(r.path for r in results))
        rank = found.index(case["path"]) + 1 if case["path"] in found else None
        score = max((r.score for r in results if r.path == case["path"]), default=None)
        rows.append(
            {**case, "rank": rank, "score": score, "top": found[:3], "holdout": held_out(i)}
        )
    elapsed = time.perf_counter() - started
    ranks = [row["rank"] for row in rows]
    return {
        "mode": mode,
        f"recall@{K}": sum(r is not None for r in ranks) / len(rows),
        "mrr": sum(1 / r for r in ranks if r is not None) / len(rows),
        "ms_per_query": elapsed / len(rows) * 1e3,
        "cases": rows,
    }


def negatives(index: Any, queries: list[str]) -> list[dict[str, Any]]:
    """The best score a search gives each question that no note answers."""
    rows = []
    for i, query in enumerate(queries):
        results = index.search(query, limit=K)
        rows.append(
            {
                "query": query,
                "top_score": results[0].score if results else 0.0,
                "top": results[0].path if results else None,
                "holdout": held_out(i),
            }
        )
    return rows


def separation(
    cases: list[dict[str, Any]], negs: list[dict[str, Any]], threshold: float
) -> dict[str, Any]:
    """At ``threshold``: the share of questions whose note is in the top 3 and scores at least
    it, and the share of unanswerable questions with nothing at or above it; for the tuning
    and held-out parts apart."""
    out: dict[str, Any] = {"threshold": threshold}
    for part, hold in (("tune", False), ("holdout", True)):
        mine = [c for c in cases if c["holdout"] == hold]
        kept = [c for c in mine if c["rank"] is not None and c["rank"] <= 3]
        kept = [c for c in kept if c["score"] is not None and c["score"] >= threshold]
        clean = [n for n in negs if n["holdout"] == hold and n["top_score"] < threshold]
        out[part] = {
            "kept": len(kept) / len(mine),
            "clean": len(clean) / len([n for n in negs if n["holdout"] == hold]),
        }
    return out


def run(
    seed: int = SEED, chunk_size: int = 240, chunk_overlap: int = 40, postgres: str | None = None
) -> dict[str, Any]:
    from localgpt.config import MemoryConfig
    from localgpt.memory.embedder import Embedder
    from localgpt.memory.index import MemoryIndex
    from localgpt.memory.workspace import Workspace

    defaults = MemoryConfig()
    with tempfile.TemporaryDirectory(prefix="localgpt-eval-memory-") as tmp:
        home = Path(tmp)
        workspace = Workspace(home / "workspace")
        cases = build_workspace(workspace.root, seed)
        index: Any
        if postgres is not None:  # the shared index: PostgreSQL with pgvector
            from localgpt.memory.pgindex import PgMemoryIndex

            index = PgMemoryIndex(
                postgres, workspace, Embedder(), chunk_size=chunk_size, chunk_overlap=chunk_overlap
            )
        else:
            index = MemoryIndex(
                home / "index.sqlite",
                workspace,
                Embedder(),
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
            )
        stats = index.reindex()
        results: dict[str, Any] = {
            "seed": seed,
            "notes": stats.files_indexed,
            "chunks": stats.chunks_total,
            "index_seconds": stats.seconds,
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
            "backend": "postgresql" if postgres else "sqlite",
        }
        data = json.loads(DATA.read_text())
        for mode in ("fts", "vector", "hybrid"):
            results[mode] = evaluate(index, cases, mode)
        results["keyword"] = evaluate(index, data["keyword_cases"], "hybrid")
        negs = negatives(index, data["negatives"])
        results["negatives"] = negs
        answerable = results["hybrid"]["cases"] + results["keyword"]["cases"]
        results["thresholds"] = {
            "search_min_score": separation(answerable, negs, defaults.search_min_score),
            "recall_threshold": separation(answerable, negs, defaults.recall_threshold),
        }
        index.close()
    return results


# What each threshold must keep of the tuning part's answers that rank in the top 3 (their
# note at or above it): a search the user or the model asked for loses none of them; a recall
# before every answer may lose a tenth of them to stay quiet more often.
TARGETS = {"search_min_score": 1.0, "recall_threshold": 0.9}


def calibrate(seed: int = SEED) -> None:
    """For each keyword weight, the highest thresholds that keep ``TARGETS`` of the tuning
    part's answers; with the held-out part's figures at the same thresholds."""
    from localgpt.memory import scoring

    grid = [round(0.15 + 0.0125 * i, 4) for i in range(33)]
    for weight in (0.0, 0.1, 0.25, 0.5):
        scoring.KEYWORD_WEIGHT = weight
        results = run(seed)
        cases = results["hybrid"]["cases"] + results["keyword"]["cases"]
        negs = results["negatives"]
        sweeps = [separation(cases, negs, t) for t in grid]
        tuning = [c for c in results["hybrid"]["cases"] if not c["holdout"]]
        recall = sum(c["rank"] is not None for c in tuning) / len(tuning)
        words = [c for c in results["keyword"]["cases"] if not c["holdout"]]
        exact = sum(c["rank"] is not None for c in words) / len(words)
        print(
            f"keyword weight {weight}: tuning recall@{K} {recall:.2f}, by exact words {exact:.2f}",
            flush=True,
        )
        attainable = separation(cases, negs, 0.0)["tune"]["kept"]
        for name, target in TARGETS.items():
            fits = [r for r in sweeps if r["tune"]["kept"] >= target * attainable - 1e-9]
            best = fits[-1] if fits else sweeps[0]
            print(
                f"  {name} {best['threshold']}: tuning kept {best['tune']['kept']:.2f} clean "
                f"{best['tune']['clean']:.2f} | held out kept {best['holdout']['kept']:.2f} "
                f"clean {best['holdout']['clean']:.2f}",
                flush=True,
            )


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['notes']} notes, {results['chunks']} chunks, indexed in "
        f"{results['index_seconds']:.1f} s (chunk_size {results['chunk_size']}, "
        f"overlap {results['chunk_overlap']}); {len(results['hybrid']['cases'])} paraphrased "
        "questions",
        f"{'mode':<10}{f'recall@{K}':>10}{'MRR':>8}{'ms/query':>10}",
    ]
    for mode in ("fts", "vector", "hybrid"):
        row = results[mode]
        lines.append(
            f"{mode:<10}{row[f'recall@{K}']:>10.2f}{row['mrr']:>8.2f}{row['ms_per_query']:>10.1f}"
        )
    keyword = results["keyword"]
    lines.append(
        f"{len(keyword['cases'])} searches by a note's exact words: recall@{K} "
        f"{keyword[f'recall@{K}']:.2f}, MRR {keyword['mrr']:.2f}"
    )
    for name, sep in results["thresholds"].items():
        lines.append(
            f"{name} {sep['threshold']}: answer kept in top 3 (tuning/held out) "
            f"{sep['tune']['kept']:.2f}/{sep['holdout']['kept']:.2f}; unanswerable questions "
            f"with nothing above it {sep['tune']['clean']:.2f}/{sep['holdout']['clean']:.2f}"
        )
    misses = [c for c in results["hybrid"]["cases"] if c["rank"] is None]
    for case in misses:
        lines.append(f"hybrid miss: {case['query']!r} -> {case['path']} (got {case['top']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the generated notes")
    parser.add_argument("--chunk-size", type=int, default=240, help="in embedder tokens")
    parser.add_argument("--chunk-overlap", type=int, default=40, help="in embedder tokens")
    parser.add_argument(
        "--calibrate", action="store_true", help="sweep the keyword weight and thresholds"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="evaluate the PostgreSQL + pgvector index (a server started for the run)",
    )
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.seed)
        return
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.backends import PostgresServer

        server = PostgresServer.create()
        try:
            results = run(args.seed, args.chunk_size, args.chunk_overlap, server.dsn())
        finally:
            server.stop(remove=True)
    else:
        results = run(args.seed, args.chunk_size, args.chunk_overlap)
    print(table(results))
    WORK.mkdir(exist_ok=True)
    out = WORK / ("eval_memory_pg.json" if args.postgres else "eval_memory.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
