"""A GraphRAG-style entity graph built from the book's glossary, used to expand queries.

GraphRAG (Edge et al. 2024) has an LLM extract entities and relations from every chunk and
summarises communities of the resulting graph. Here the entities are already curated: each
term of `glossary.md` is a node (with the acronym in its Chinese line, "（GQA）", as an
alias), and term A links to term B when B's name or alias appears in A's definition. A
query that names an entity is expanded with its neighbours' names, so that a sparse
retriever can find passages that use the related vocabulary instead of the query's words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from llminfra_lab.checks import positive_int
from llminfra_lab.rag.corpus import book_pages

__all__ = ["Term", "parse_glossary", "entity_graph", "find_entities", "expand_query"]


@dataclass(frozen=True)
class Term:
    """A glossary entry: `name`, `chinese` (its first line), `aliases` (acronyms), `definition`."""
    name: str
    chinese: str
    aliases: tuple[str, ...]
    definition: str


def parse_glossary(text: str | None = None) -> list[Term]:
    """The terms of a MyST {glossary} block (the shipped snapshot of glossary.md by default):
    a term's name at the start of a line, then its Chinese name and definition indented."""
    text = book_pages()["glossary"] if text is None else text
    terms, name, body = [], None, []

    def close():
        if name is not None and body:
            first, _, rest = " ".join(body).partition(". ")
            aliases = tuple(a for a in re.findall(r"[（(]([A-Za-z0-9][A-Za-z0-9 .+-]*)[）)]", first + " " + name)
                            if a.lower() != name.lower())
            definition = re.sub(r"\{term\}`([^`<]*?)\s*(?:<[^`]*>)?`", r"\1", rest)
            terms.append(Term(name, first, aliases, definition))

    inside = False
    for line in text.splitlines():
        if line.startswith("```"):
            close()
            inside, name, body = line.strip() == "```{glossary}", None, []
        elif inside and re.match(r"^[^\s:]", line):
            close()
            name, body = line.strip(), []
        elif inside and line.startswith("  ") and name is not None:
            body.append(line.strip())
    close()
    return terms


def _mentions(text: str, term: Term) -> bool:
    low = text.lower()
    if re.search(r"(?<![a-z0-9])" + re.escape(term.name.lower()) + r"(?![a-z0-9])", low):
        return True
    return any(re.search(r"(?<![A-Za-z0-9])" + re.escape(a) + r"(?![A-Za-z0-9])", text) for a in term.aliases)


def entity_graph(terms: list[Term] | None = None) -> dict[str, set[str]]:
    """{term name: names of linked terms}, undirected: A-B when either definition mentions the other."""
    terms = parse_glossary() if terms is None else terms
    graph: dict[str, set[str]] = {t.name: set() for t in terms}
    for a in terms:
        for b in terms:
            if a.name != b.name and _mentions(a.definition, b):
                graph[a.name].add(b.name)
                graph[b.name].add(a.name)
    return graph


def find_entities(query: str, terms: list[Term] | None = None) -> list[str]:
    """Names of the glossary terms the query mentions (by name or alias), longest name first."""
    terms = parse_glossary() if terms is None else terms
    return sorted((t.name for t in terms if _mentions(query, t)), key=lambda n: (-len(n), n))


def expand_query(query: str, graph: dict[str, set[str]] | None = None, terms: list[Term] | None = None,
                 max_neighbours: int = 3) -> str:
    """The query followed by up to max_neighbours neighbour names of each entity it mentions
    (neighbours sorted by their own degree, best connected first, then by name)."""
    positive_int("max_neighbours", max_neighbours)
    terms = parse_glossary() if terms is None else terms
    graph = entity_graph(terms) if graph is None else graph
    extra: list[str] = []
    for name in find_entities(query, terms):
        near = sorted(graph.get(name, ()), key=lambda n: (-len(graph[n]), n))
        extra += [n for n in near[:max_neighbours] if n not in extra and n.lower() not in query.lower()]
    return " ".join([query] + extra)
