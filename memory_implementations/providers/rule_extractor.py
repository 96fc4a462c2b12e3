"""``RuleBasedEntityExtractor``: offline entities and relationships from patterns and capitalised spans."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .interfaces import USER_ENTITY, ExtractedEntity, ExtractedRelationship, Extraction
from .text_utils import STOPWORDS

CITIES = frozenset(
    "new york,los angeles,chicago,houston,phoenix,philadelphia,san antonio,san diego,dallas,austin,san francisco,"
    "seattle,denver,boston,miami,atlanta,portland,detroit,nashville,las vegas,washington,toronto,vancouver,montreal,"
    "mexico city,london,paris,berlin,madrid,barcelona,rome,milan,lisbon,amsterdam,brussels,vienna,zurich,geneva,"
    "dublin,edinburgh,manchester,munich,hamburg,prague,warsaw,stockholm,oslo,copenhagen,helsinki,athens,istanbul,"
    "moscow,kyiv,cairo,lagos,nairobi,johannesburg,cape town,dubai,mumbai,delhi,bangalore,bengaluru,karachi,"
    "singapore,bangkok,jakarta,manila,hong kong,shanghai,beijing,shenzhen,tokyo,osaka,seoul,taipei,sydney,"
    "melbourne,auckland,sao paulo,rio de janeiro,buenos aires,lima,bogota,santiago".split(",")
)
COUNTRIES = frozenset(
    "usa,united states,canada,mexico,brazil,argentina,uk,united kingdom,england,scotland,ireland,france,germany,"
    "spain,portugal,italy,netherlands,belgium,switzerland,austria,poland,sweden,norway,denmark,finland,greece,"
    "turkey,russia,ukraine,egypt,nigeria,kenya,south africa,india,pakistan,china,japan,korea,south korea,vietnam,"
    "thailand,indonesia,philippines,australia,new zealand,texas,california,florida".split(",")
)
ORGANIZATIONS = frozenset(
    "google,alphabet,microsoft,apple,amazon,meta,facebook,netflix,openai,anthropic,ibm,intel,nvidia,oracle,"
    "salesforce,tesla,spacex,uber,airbnb,spotify,twitter,linkedin,adobe,samsung,sony,toyota,walmart,target,"
    "starbucks,deloitte,accenture,mckinsey,nasa,unicef,who,un,mit,stanford,harvard".split(",")
)
ORG_SUFFIXES = frozenset(
    "inc inc. corp corp. corporation llc ltd ltd. plc gmbh co co. company university college institute school "
    "hospital clinic bank labs lab group foundation agency airlines technologies systems partners studios".split()
)
CONCEPTS = frozenset(
    "machine learning,artificial intelligence,deep learning,data science,python,javascript,typescript,rust,golang,"
    "java,kubernetes,docker,sql,postgresql,redis,react,cloud computing,blockchain,cybersecurity,climate change,"
    "photography,yoga,meditation,hiking,running,cycling,swimming,chess,cooking,baking,gardening,painting,music,"
    "guitar,piano,reading,travel,vegetarian,vegan,coffee,tea,football,soccer,basketball,tennis,golf,marathon,"
    "remote work,mental health,nutrition,investing,budget,mortgage,retirement".split(",")
)
FIRST_NAMES = frozenset(
    "ana anna maria mary john james robert michael david william richard joseph thomas charles daniel matthew "
    "anthony mark paul steven andrew joshua kevin brian george emma olivia sophia isabella mia amelia harper "
    "evelyn abigail emily elizabeth sofia ella grace chloe camila lucy lily sarah jessica jennifer linda susan "
    "karen nancy lisa betty helen sandra ashley kim carlos juan luis jose pedro diego miguel sam alex chris "
    "jordan taylor morgan priya raj arjun wei li chen yuki hana omar ali fatima noah liam ethan lucas mateo "
    "leo jack oliver henry tom tim ben nick kate beth amy rachel laura julia eva nina zoe bob alice".split()
)
RELATIONS = (
    "sister|brother|mother|father|mom|mum|dad|wife|husband|partner|girlfriend|boyfriend|son|daughter|friend|"
    "best friend|cousin|aunt|uncle|grandma|grandmother|grandpa|grandfather|manager|boss|colleague|coworker|"
    "co-worker|roommate|neighbor|neighbour|teacher|doctor|therapist|mentor"
)
PETS = "dog|cat|puppy|kitten|pet|horse|pony|parrot|rabbit|bunny|hamster|guinea pig|bird|fish|turtle|tortoise|snake"
#: Entity types a pet may take when configured. The default types have none: the pet is then an attribute
#: of the speaker named by its species (``dog: Biscuit``), and its name is never mistaken for a person.
PET_TYPES = ("pet", "animal")
JOB_SUFFIXES = ("er", "or", "ist", "ian", "ant", "ent", "eer", "ect")
JOB_WORDS = frozenset(
    "nurse doctor chef student engineer teacher lawyer designer developer programmer architect accountant "
    "scientist pharmacist dentist pilot electrician plumber carpenter firefighter barista cashier artist "
    "writer editor journalist analyst consultant manager surgeon paramedic veterinarian vet professor "
    "researcher intern freelancer nanny mechanic farmer".split()
)
NOT_JOBS = frozenset(
    "bit little lot fan big huge member part user owner person beginner lover better other under after "
    "winner sucker number".split()
)
SENTENCE_STARTERS = STOPWORDS | frozenset(
    "hi hello hey thanks please sorry yesterday today tomorrow tonight also actually maybe yes no so well "
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december ok okay what why how when where who dear".split()
)

_CAP = r"(?:(?:St|Mt|Dr|Mr|Mrs|Ms)\.|[A-Z][\w'\u2019&-]*)"
_SPAN = rf"{_CAP}(?:[ \t]+(?:(?:of|de|del|la|the|&|for)[ \t]+)?{_CAP})*"
_NAME = r"[A-Za-z][\w'\u2019-]*(?:[ \t]+[A-Z][\w'\u2019-]*)?"
_I = r"(?:^|(?<=[\s,;:(\"]))(?:i|I)"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    apply: Callable[[_Builder, re.Match[str]], None]


class _Builder:
    """Accumulates entities (merged by name) and relationships for one text."""

    def __init__(self, entity_types: Sequence[str]) -> None:
        self.allowed = {t.lower() for t in entity_types}
        self.entities: dict[str, ExtractedEntity] = {}
        self.relationships: list[ExtractedRelationship] = []
        self.ignored: set[str] = set()

    def entity(self, entity_name: str, kind: str, /, **attributes: object) -> ExtractedEntity | None:
        name = _clean(entity_name)
        if not name or kind not in self.allowed:
            return None
        entity = self.entities.get(name.lower())
        if entity is None:
            entity = self.entities[name.lower()] = ExtractedEntity(name=name, type=kind)
        entity.attributes.update({k: v for k, v in attributes.items() if v is not None})
        return entity

    def user(self, **attributes: object) -> ExtractedEntity | None:
        return self.entity(USER_ENTITY, "person", **attributes)

    def known_names(self) -> set[str]:
        names = set(self.entities) | self.ignored | {USER_ENTITY.lower()}
        for entity in self.entities.values():
            names.update(a.lower() for a in entity.aliases)
        return names

    def relate(self, source: ExtractedEntity | None, target: ExtractedEntity | None, kind: str) -> None:
        if source is None or target is None or source is target:
            return
        rel = ExtractedRelationship(source.name, target.name, kind)
        if rel not in self.relationships:
            self.relationships.append(rel)

    def result(self) -> Extraction:
        return Extraction(entities=list(self.entities.values()), relationships=self.relationships)


def _clean(name: str) -> str:
    name = re.sub(r"^(?:the|The)\s+", "", name.strip(" \t\n.,;:!?\"'()"))
    return re.sub(r"\s+", " ", name)


def _title(name: str) -> str:
    return " ".join(w if w[:1].isupper() else w.capitalize() for w in name.split())


def classify(span: str, *, before: str = "") -> str | None:
    """Guess the entity type of a capitalised span from gazetteers, suffixes and the preceding word."""
    low = span.lower()
    last = low.split()[-1]
    if low in CITIES or low in COUNTRIES:
        return "location"
    if low in ORGANIZATIONS or last in ORG_SUFFIXES or low.startswith("university of"):
        return "organization"
    if low in CONCEPTS:
        return "concept"
    if low.split()[0] in FIRST_NAMES:
        return "person"
    prev = before.lower()
    if prev in {"in", "to", "from", "near", "visit", "visiting", "visited"}:
        return "location"
    if prev in {"at", "for", "joined", "join"}:
        return "organization"
    if prev in {
        "with",
        "met",
        "meet",
        "meeting",
        "told",
        "tell",
        "asked",
        "ask",
        "call",
        "called",
        "and",
        "mr",
        "ms",
        "mrs",
        "dr",
    }:
        return "person"
    return None


def _place(builder: _Builder, span: str) -> ExtractedEntity | None:
    kind = classify(span, before="in")
    return builder.entity(span, kind if kind in ("location", "organization") else "location")


def _set_name(b: _Builder, m: re.Match[str]) -> None:
    name = _title(m.group("name"))
    if name.split()[0].lower() in SENTENCE_STARTERS:
        return
    user = b.user(name=name)
    if user is not None and name not in user.aliases:
        user.aliases.append(name)


def _is_job(phrase: str) -> bool:
    head = phrase.split()[-1]
    return head not in NOT_JOBS and head not in STOPWORDS and (head in JOB_WORDS or head.endswith(JOB_SUFFIXES))


def _set_job(b: _Builder, m: re.Match[str]) -> None:
    words = m.group("job").lower().split()
    for job in (" ".join(words), words[0]):
        if _is_job(job):
            b.user(job=job)
            return


def _works_at(b: _Builder, m: re.Match[str]) -> None:
    org = b.entity(m.group("org"), "organization")
    b.relate(b.user(employer=_clean(m.group("org"))), org, "works_at")


def _lives_in(b: _Builder, m: re.Match[str]) -> None:
    place = _clean(m.group("place"))
    b.relate(b.user(city=place), _place(b, place), "lives_in")


def _moved_to(b: _Builder, m: re.Match[str]) -> None:
    place = _clean(m.group("place"))
    b.relate(b.user(city=place), _place(b, place), "moved_to")


def _from(b: _Builder, m: re.Match[str]) -> None:
    place = _clean(m.group("place"))
    b.relate(b.user(hometown=place), _place(b, place), "from")


def _relation(b: _Builder, m: re.Match[str]) -> None:
    role = m.group("role").lower().replace(" ", "_").replace("-", "_")
    person = b.entity(m.group("person"), "person", relation=role)
    b.relate(b.user(), person, f"has_{role}")
    b.relate(b.user(), person, "knows")


def _pet(b: _Builder, m: re.Match[str]) -> None:
    name, species = _clean(m.group("pet")), m.group("species").lower()
    if not name or name.split()[0].lower() in SENTENCE_STARTERS:
        return
    user = b.user(**{species.replace(" ", "_"): name})  # "dog": "Biscuit" (a new dog supersedes the old)
    kind = next((t for t in PET_TYPES if t in b.allowed), None)
    if kind is None:
        b.ignored.add(name.lower())  # not a person: keep the generic pass from typing it as one
        return
    b.relate(user, b.entity(name, kind, species=species), "has_pet")


def _preference(b: _Builder, m: re.Match[str]) -> None:
    verb = m.group("verb").lower()
    thing = _clean(m.group("thing")).lower()
    if not thing or thing in STOPWORDS:
        return
    negative = verb in {"hate", "dislike", "can't stand", "cannot stand"}
    user = b.user(**{"dislikes" if negative else "prefers": thing})
    kind = classify(thing) or "concept"
    target = b.entity(thing if kind == "concept" else _title(thing), kind)
    b.relate(user, target, "dislikes" if negative else ("prefers" if verb == "prefer" else "likes"))


def _third_person(kind: str, target_type: str) -> Callable[[_Builder, re.Match[str]], None]:
    def apply(b: _Builder, m: re.Match[str]) -> None:
        person_name = m.group("person")
        if person_name.split()[0].lower() in SENTENCE_STARTERS:
            return
        person = b.entity(person_name, "person")
        target = b.entity(m.group("target"), classify(m.group("target"), before="in") or target_type)
        b.relate(person, target, kind)

    return apply


_THING = r"(?P<thing>[\w'\u2019 -]{2,40}?)(?=\s+(?:over|to|than|because|but|and|when|if)\b|[.,;!?]|$)"
RULES: tuple[_Rule, ...] = tuple(
    _Rule(re.compile(p, flags), fn)
    for p, flags, fn in (
        (rf"\b(?i:my name(?:'s| is))\s+(?P<name>{_NAME})", 0, _set_name),
        (rf"\b(?i:call me|i go by)\s+(?P<name>{_NAME})", 0, _set_name),
        (rf"{_I}(?:'m| am)\s+(?P<name>[A-Z][a-z]+)(?=[,.!]|\s+(?:and|from|here)\b)", 0, _set_name),
        (rf"{_I}\s+(?:work|am working|'m working)\s+as\s+(?:an?\s+)?(?P<job>[a-zA-Z]+(?:\s+[a-zA-Z]+)?)", 0, _set_job),
        (rf"{_I}(?:'m| am)\s+(?:an?)\s+(?P<job>[a-z]+(?:\s+[a-z]+)?)(?=[\s.,!;]|$)", 0, _set_job),
        (r"\b(?i:my job is)\s+(?:an?\s+)?(?P<job>[a-z]+(?:\s+[a-z]+)?)", 0, _set_job),
        (rf"{_I}\s+(?:work|worked|am working|'m working|just started)\s+(?:at|for)\s+(?P<org>{_SPAN})", 0, _works_at),
        (rf"{_I}\s+(?:joined)\s+(?P<org>{_SPAN})", 0, _works_at),
        (rf"{_I}\s+work\s+as\s+(?:an?\s+)?[a-z]+(?:\s+[a-z]+)?\s+(?:at|for)\s+(?P<org>{_SPAN})", 0, _works_at),
        (rf"{_I}\s+(?:live|am living|'m living|reside|stay)\s+in\s+(?P<place>{_SPAN})", 0, _lives_in),
        (rf"{_I}(?:'m| am)\s+based\s+in\s+(?P<place>{_SPAN})", 0, _lives_in),
        (
            rf"{_I}\s+(?:just\s+|recently\s+)?(?:moved|relocated|am moving|'m moving)\s+to\s+(?P<place>{_SPAN})",
            0,
            _moved_to,
        ),
        (rf"{_I}(?:'m| am)\s+(?:originally\s+)?from\s+(?P<place>{_SPAN})", 0, _from),
        (rf"\b(?i:my)\s+(?P<species>{PETS})(?:'s name is|,| is called| is named| named| called|)\s+"
         rf"(?P<pet>{_CAP})", 0, _pet),
        (rf"\b(?P<pet>{_CAP})\s+is\s+my\s+(?P<species>{PETS})\b", 0, _pet),
        (rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+is\s+my\s+(?P<role>{RELATIONS})\b", 0, _relation),
        (
            rf"\b(?i:my)\s+(?P<role>{RELATIONS})(?:'s name is|,| is called| named| called|)\s+"
            rf"(?P<person>{_CAP}(?:[ \t]+{_CAP})?)",
            0,
            _relation,
        ),
        (
            rf"{_I}\s+(?:really\s+|much\s+)?"
            rf"(?P<verb>prefer|like|love|enjoy|hate|dislike|can't stand|cannot stand)\s+{_THING}",
            0,
            _preference,
        ),
        (
            rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+(?:works|worked)\s+(?:at|for)\s+(?P<target>{_SPAN})",
            0,
            _third_person("works_at", "organization"),
        ),
        (
            rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+(?:lives|lived)\s+in\s+(?P<target>{_SPAN})",
            0,
            _third_person("lives_in", "location"),
        ),
    )
)
_CAP_SPAN = re.compile(rf"\b{_SPAN}")
_PREV_WORD = re.compile(r"([A-Za-z]+)\W*$")


class RuleBasedEntityExtractor:
    """Offline extraction: self-descriptions ("my name is", "I work at", "I moved to", "X is my sister"),
    gazetteers (cities, countries, companies, concepts), organisation suffixes and capitalised spans.

    The speaker is the entity "User" (type person) carrying ``name``, ``job``, ``employer``, ``city``,
    ``prefers`` ... attributes. Only the configured ``entity_types`` are returned.
    """

    name = "rule-based"

    async def extract(
        self, text: str, *, entity_types: Sequence[str], known_entities: Sequence[str] = ()
    ) -> Extraction:
        """Return the entities and relationships in ``text``."""
        return self.extract_sync(text, entity_types=entity_types, known_entities=known_entities)

    def extract_sync(self, text: str, *, entity_types: Sequence[str], known_entities: Sequence[str] = ()) -> Extraction:
        """Blocking version of :meth:`extract`."""
        builder = _Builder(entity_types)
        for rule in RULES:
            for match in rule.pattern.finditer(text):
                rule.apply(builder, match)
        self._spans(builder, text)
        self._concepts(builder, text)
        self._known(builder, text, known_entities)
        return builder.result()

    @staticmethod
    def _spans(builder: _Builder, text: str) -> None:
        for match in _CAP_SPAN.finditer(text):
            span = _clean(match.group(0))
            words = span.split()
            while words and words[0].lower() in SENTENCE_STARTERS:  # "The", "Yesterday", "I" ...
                words = words[1:]
            if not words or words == ["I"]:
                continue
            span = " ".join(words)
            if span.lower() in builder.known_names():
                continue
            prev = _PREV_WORD.search(text[: match.start()])
            kind = classify(span, before=prev.group(1) if prev else "")
            if kind is not None:
                builder.entity(span, kind)

    @staticmethod
    def _concepts(builder: _Builder, text: str) -> None:
        low = text.lower()
        for concept in CONCEPTS:
            if re.search(rf"\b{re.escape(concept)}\b", low) and concept not in builder.entities:
                builder.entity(concept, "concept")

    @staticmethod
    def _known(builder: _Builder, text: str, known_entities: Sequence[str]) -> None:
        for name in known_entities:
            if (
                name
                and name.lower() not in builder.known_names()
                and re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE)
            ):
                builder.entity(name, classify(name) or _fallback_type(builder))


def _fallback_type(builder: _Builder) -> str:
    return "concept" if "concept" in builder.allowed else next(iter(sorted(builder.allowed)))


__all__ = ["CITIES", "CONCEPTS", "ORGANIZATIONS", "ORG_SUFFIXES", "RuleBasedEntityExtractor", "classify"]
