"""``RuleBasedEntityExtractor``: offline entities and relationships from patterns and capitalised spans."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
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
    "thailand,indonesia,philippines,australia,new zealand,iceland,hungary,romania,bulgaria,croatia,serbia,"
    "czechia,czech republic,slovakia,slovenia,estonia,latvia,lithuania,luxembourg,cyprus,malta,wales,"
    "northern ireland,israel,lebanon,saudi arabia,qatar,uae,united arab emirates,iran,iraq,morocco,algeria,tunisia,"
    "ethiopia,ghana,senegal,tanzania,uganda,rwanda,zimbabwe,malaysia,sri lanka,nepal,bangladesh,taiwan,mongolia,"
    "cambodia,laos,myanmar,north korea,peru,colombia,venezuela,ecuador,bolivia,uruguay,paraguay,cuba,jamaica,"
    "costa rica,panama,guatemala,puerto rico,dominican republic,america,europe,asia,africa,north america,"
    "south america,latin america,middle east,scandinavia,caribbean,alabama,alaska,arizona,arkansas,colorado,"
    "connecticut,delaware,georgia,hawaii,idaho,illinois,indiana,iowa,kansas,kentucky,louisiana,maine,maryland,"
    "massachusetts,michigan,minnesota,mississippi,missouri,montana,nebraska,nevada,new hampshire,new jersey,"
    "new mexico,north carolina,north dakota,ohio,oklahoma,oregon,pennsylvania,rhode island,south carolina,"
    "south dakota,tennessee,texas,utah,vermont,virginia,west virginia,wisconsin,wyoming,california,florida".split(",")
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
#: Concepts that are also everyday words ("running late", "my coffee", "the budget for the trip", "rust on
#: the bike"): found only after a cue ("I love cooking", "go running", "tea over coffee") or capitalised.
COMMON_CONCEPTS = frozenset(
    "running reading travel coffee tea music cooking baking budget painting swimming cycling investing retirement "
    "mortgage nutrition gardening hiking marathon".split()
)
CASED_CONCEPTS = frozenset({"rust", "java", "react"})
CONCEPT_CUES = frozenset(
    "love loves loved like likes enjoy enjoys prefer prefers hate hates into about learning learn started start "
    "do doing practice practicing practise practising go going went play playing over than up".split()
)
LANGUAGES = frozenset(
    "english spanish french german italian portuguese japanese chinese mandarin cantonese korean arabic hindi "
    "russian dutch swedish norwegian danish finnish polish greek turkish hebrew vietnamese thai indonesian tagalog "
    "swahili urdu bengali persian farsi ukrainian czech latin".split()
)
#: Products and apps: concepts when capitalised, never places or people ("switching from Android").
PRODUCTS = frozenset(
    "iphone ipad android ios macos mac macbook windows linux kindle playstation xbox nintendo chatgpt "
    "excel powerpoint slack notion gmail outlook whatsapp instagram tiktok youtube reddit "
    "minecraft fortnite".split()
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
    "(?:sister|brother|mother|father|son|daughter)-in-law|step(?:mom|dad|mother|father|sister|brother|son|daughter)|"
    "sister|brother|mother|father|mom|mum|dad|wife|husband|partner|girlfriend|boyfriend|fianc[eé]e?|ex|son|"
    "daughter|friend|best friend|cousin|aunt|uncle|niece|nephew|grandma|grandmother|grandpa|grandfather|grandson|"
    "granddaughter|manager|boss|colleague|coworker|co-worker|classmate|roommate|flatmate|neighbor|neighbour|"
    "landlord|teacher|doctor|therapist|mentor|coach"
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
MONTHS = frozenset("january february march april may june july august september october november december".split())
SENTENCE_STARTERS = (
    STOPWORDS
    | MONTHS
    | frozenset(
        "hi hello hey thanks please sorry yesterday today tomorrow tonight also actually maybe yes no so well "
        "monday tuesday wednesday thursday friday saturday sunday ok okay what why how when where who dear".split()
    )
)
#: Capitalised words that are never an entity (or part of one) on their own: pronouns and indefinites,
#: greetings and interjections, discourse words, imperatives that open assistant sentences and list items,
#: headings, family titles, days, holidays and other time words.
NOT_ENTITIES = SENTENCE_STARTERS | frozenset(
    "you're we're they're he's she's there's here's let's yours ours theirs myself yourself ourselves "
    "anything everything nothing something someone anyone everyone nobody somebody anybody none whatever "
    "whoever whichever wherever whenever another either neither every many much several "
    "thank welcome yeah yep yup nope nah ah ahh aw oops ugh lol lmao haha hahaha hmm hm wow yay omg btw tbh fyi "
    "asap imo bye goodbye cheers congrats congratulations great awesome cool nice perfect sure absolutely "
    "definitely certainly exactly indeed alright right wait good bad best happy fine glad excellent wonderful "
    "honestly basically anyway besides meanwhile otherwise instead still maybe perhaps probably overall "
    "additionally furthermore moreover generally usually typically ideally alternatively unfortunately "
    "fortunately hopefully finally first second third fourth last next now later soon sometimes often never "
    "always however though although because since unless until while whether "
    "note important tip tips step steps option options pros cons summary example bonus warning update edit ps "
    "ingredients instructions question answer goal goals plan one ones thing things stuff "
    "chapter section page part conclusion general particular addition short fact brief total contrast "
    "try visit walk have make take let check consider use add open tap turn go get keep start stop mix knead stay "
    "move list set ask call pick choose avoid look see find read write focus drink eat practice remember imagine "
    "tell give bring put run share feel think enjoy hope love like need want thanks sorry "
    "settings privacy preferences menu file view help profile account "
    "mom mum dad mommy daddy mama papa grandma granny grandpa nana mother father sister brother aunt uncle "
    "mondays tuesdays wednesdays thursdays fridays saturdays sundays weekend weekends week weeks day days "
    "month months year years morning mornings afternoon evening evenings night nights noon midnight eve "
    "spring summer autumn fall winter christmas xmas easter thanksgiving halloween hanukkah ramadan eid diwali "
    "passover valentine valentines".split()
)
#: Names that are also words opening a sentence ("Mark it as done", "May I ask"): not names there.
VERB_NAMES = frozenset({"mark", "grace", "will", "bill", "may", "june", "april"})
#: Upper-case words kept out although acronyms are otherwise proper nouns ("US", "UCLA").
ACRONYM_STOP = frozenset("i ok lol omg btw tbh fyi asap imo ps am pm it tv diy faq".split())
#: Concepts after one of these within three words ("I love cooking and baking").
LIKE_CUES = frozenset("love loves loved like likes enjoy enjoys prefer prefers hate hates into".split())
PRONOUNS = frozenset("i me you he him she her it we us they them this that these those myself yourself".split())
NAME_STOP = NOT_ENTITIES - MONTHS  # "April is my roommate", "June and I"
CONNECTORS = frozenset({"of", "de", "del", "la", "the", "&", "for"})
TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof"})
#: Lower-case place names also used as words ("in turkey", "us"): only capitalised.
AMBIGUOUS_PLACES = frozenset({"turkey", "china", "chile", "us", "georgia", "jordan", "nice", "reading", "mobile"})
MAX_WORDS = 6
_POSSESSIVE = re.compile(r"['\u2019]s$")
_CONTRACTION = re.compile(r"['\u2019](?:ve|re|ll|d|m)$|n['\u2019]t$")
#: "to X" is a place only after these ("talk to Priyanka" is not).
TO_PLACE_VERBS = frozenset(
    "go goes going gone went move moves moved moving fly flies flying flew travel travels travelled traveled "
    "traveling travelling trip trips drive drove driving back relocate relocated relocating head headed heading "
    "commute come came coming get got getting way return returned returning vacation holiday visit welcome "
    "flight flights train ticket tickets road".split()
)
#: "from X" is not a place after these ("an email from Priyanka", "an offer from Globex").
FROM_NOT_PLACE = frozenset(
    "email emails message messages text texts call calls offer offers letter gift gifts note notes news feedback "
    "help advice invite invitation reply response switching switch switched recovering".split()
)
#: "a <noun> called X": the type X takes.
NAMED_NOUNS = {
    **dict.fromkeys(
        "company startup firm business shop store bakery cafe café restaurant bar pub band team club gym school "
        "agency brand charity nonprofit church studio label publisher".split(),
        "organization",
    ),
    **dict.fromkeys(
        "town city village place neighborhood neighbourhood street island lake river park".split(), "location"
    ),
    **dict.fromkeys(
        "book novel app show podcast game movie film song album series course project tool".split(), "concept"
    ),
    **dict.fromkeys("guy girl man woman kid boy lady dude person".split(), "person"),
}
#: The word before a capitalised span that types it ("in X" a place, "at X" an organisation, "met X" a person).
CUES = {
    **dict.fromkeys("in to from near visit visiting visited around across along outside".split(), "location"),
    **dict.fromkeys("at joined join".split(), "organization"),
    **dict.fromkeys(
        "met meet meeting told tell asked ask call called texted emailed mr ms mrs dr uncle aunt auntie grandma "
        "grandpa granny nana".split(),
        "person",
    ),
}

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
        if not name or kind not in self.allowed or _noise(name):
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


def _noise(name: str) -> bool:
    """True for what is never an entity name: pronouns, contractions, common words, long fragments."""
    words = name.lower().replace("\u2019", "'").split()
    if not words or len(words) > MAX_WORDS:
        return True
    bases = [_POSSESSIVE.sub("", w) for w in words]
    return all(w in NAME_STOP or w in CONNECTORS for w in bases) or any(_CONTRACTION.search(w) for w in words)


def _is_stop(word: str) -> bool:
    """A capitalised word that ends a candidate span (and is never part of an entity name)."""
    low = word.lower().replace("\u2019", "'")
    if word.isupper() and len(word) > 1:  # acronyms ("US", "UCLA") unless chat shorthand ("OK", "LOL")
        return low in ACRONYM_STOP
    return low in NOT_ENTITIES or bool(_CONTRACTION.search(low)) or any(c.isdigit() for c in low)


def _clean(name: str) -> str:
    name = re.sub(r"^(?:the|The)\s+", "", name.strip(" \t\n.,;:!?\"'()"))
    return re.sub(r"\s+", " ", name)


def _title(name: str) -> str:
    return " ".join(w if w[:1].isupper() else w.capitalize() for w in name.split())


def classify(span: str, *, before: str = "") -> str | None:
    """Guess the entity type of a capitalised span from gazetteers, suffixes and the preceding word."""
    low = span.lower()
    words = low.split()
    if low in CITIES or low in COUNTRIES:
        return "location"
    if low in ORGANIZATIONS or words[-1] in ORG_SUFFIXES or low.startswith("university of"):
        return "organization"
    if (low in CONCEPTS and low not in COMMON_CONCEPTS) or low in PRODUCTS:
        return "concept"
    if low in LANGUAGES or low in NOT_ENTITIES:
        return None
    if words[0] in FIRST_NAMES or words[0].rstrip(".") in TITLES:
        return "person"
    return CUES.get(before.lower())


def _place(builder: _Builder, span: str) -> ExtractedEntity | None:
    kind = classify(span, before="in")
    return builder.entity(span, kind if kind in ("location", "organization") else "location")


def _set_name(b: _Builder, m: re.Match[str]) -> None:
    name = _title(m.group("name"))
    if name.split()[0].lower() in NOT_ENTITIES or _noise(name):
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
    name = _clean(m.group("org"))
    if name[:1].islower():  # "i work at google": a known company only ("at home", "for a startup" are not)
        if name not in ORGANIZATIONS:
            return
        name = name.capitalize()
    if _noise(name):
        return
    b.relate(b.user(employer=name), b.entity(name, "organization"), "works_at")


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
    name = _clean(m.group("person"))
    if name[:1].islower():  # "my sister ana": a known first name only ("my friend from work" is not)
        if name not in FIRST_NAMES:
            return
        name = name.capitalize()
    if name.lower() in b.ignored:
        return
    person = b.entity(name, "person", relation=role)
    if person is None:
        return
    b.relate(b.user(), person, f"has_{role}")
    b.relate(b.user(), person, "knows")


def _pet(b: _Builder, m: re.Match[str]) -> None:
    name, species = _clean(m.group("pet")), m.group("species").lower()
    if not name or name.split()[0].lower() in SENTENCE_STARTERS or _noise(name):
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
    words = thing.split()
    # a short noun phrase ("tea", "rock climbing"), not a clause ("that it teaches me", "the way you explain")
    if not 0 < len(words) <= 3 or words[0] in NOT_ENTITIES or words[-1] in NOT_ENTITIES or _noise(thing):
        return
    if any(w in PRONOUNS for w in words):
        return
    negative = verb in {"hate", "dislike", "can't stand", "cannot stand"}
    user = b.user(**{"dislikes" if negative else "prefers": thing})
    kind = classify(thing) or "concept"
    target = b.entity(thing if kind == "concept" else _title(thing), kind)
    b.relate(user, target, "dislikes" if negative else ("prefers" if verb == "prefer" else "likes"))


def _third_person(kind: str, target_type: str) -> Callable[[_Builder, re.Match[str]], None]:
    def apply(b: _Builder, m: re.Match[str]) -> None:
        person_name, target_name = _clean(m.group("person")), _clean(m.group("target"))
        if person_name.split()[0].lower() in NOT_ENTITIES or classify(person_name) not in (None, "person"):
            return
        person = b.entity(person_name, "person")
        target = b.entity(target_name, classify(target_name) or target_type)
        b.relate(person, target, kind)

    return apply


def _and_i(b: _Builder, m: re.Match[str]) -> None:
    name = _clean(m.group("person"))  # "Marcus and I", "June and I"
    if name.lower() not in NAME_STOP and name.lower() not in b.known_names() and classify(name) in (None, "person"):
        b.entity(name, "person")


def _named(b: _Builder, m: re.Match[str]) -> None:
    name = _clean(m.group("name"))  # "a bakery called Flour Power": typed by the noun, else left alone
    kind = NAMED_NOUNS.get(m.group("noun").lower())
    if kind is None or name.lower() in b.ignored:
        b.ignored.add(name.lower())
    else:
        b.entity(name, kind)


def _language(b: _Builder, m: re.Match[str]) -> None:
    if m.group("lang").lower() in LANGUAGES:
        b.entity(m.group("lang").capitalize(), "concept")


def _lower_place(b: _Builder, m: re.Match[str]) -> None:
    b.entity(_title(m.group("place")), "location")  # "we moved to denver"


_THING = r"(?P<thing>[\w'\u2019 -]{2,40}?)(?=\s+(?:over|to|than|because|but|and|when|if)\b|[.,;!?]|$)"
RULES: tuple[_Rule, ...] = tuple(
    _Rule(re.compile(p, flags), fn)
    for p, flags, fn in (
        (rf"\b(?i:my name(?:'s| is))\s+(?P<name>{_NAME})", 0, _set_name),
        (rf"\b(?i:call me|i go by)\s+(?P<name>{_NAME})", 0, _set_name),
        (rf"{_I}(?:'m| am)\s+(?P<name>[A-Z][a-z]+)(?=[,.!]|\s*$|\s+(?:and|from|here|btw|by the way)\b)", 0, _set_name),
        (rf"{_I}\s+(?:work|am working|'m working)\s+as\s+(?:an?\s+)?(?P<job>[a-zA-Z]+(?:\s+[a-zA-Z]+)?)", 0, _set_job),
        (rf"{_I}(?:'m| am)\s+(?:an?)\s+(?P<job>[a-z]+(?:\s+[a-z]+)?)(?=[\s.,!;]|$)", 0, _set_job),
        (r"\b(?i:my job is)\s+(?:an?\s+)?(?P<job>[a-z]+(?:\s+[a-z]+)?)", 0, _set_job),
        (
            rf"{_I}\s+(?:work|worked|am working|'m working|just started)\s+(?:at|for)\s+(?P<org>{_SPAN}|[a-z]+)",
            0,
            _works_at,
        ),
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
        (
            rf"\b(?i:my)\s+(?P<species>{PETS})(?:'s name is|,| is called| is named| named| called|)\s+"
            rf"(?P<pet>{_CAP})",
            0,
            _pet,
        ),
        (rf"\b(?P<pet>{_CAP})\s+is\s+my\s+(?P<species>{PETS})\b", 0, _pet),
        (rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+is\s+my\s+(?P<role>{RELATIONS})\b(?!['\u2019])", 0, _relation),
        (
            rf"\b(?i:my)\s+(?P<role>{RELATIONS})(?:'s name is|,| is called| named| called|)\s+"
            rf"(?P<person>{_CAP}(?:[ \t]+{_CAP})?|[a-z]+\b)",
            0,
            _relation,
        ),
        (rf"(?<![Tt]he )\b(?P<person>{_CAP})\s+and\s+I\b", 0, _and_i),
        (rf"\b(?:Me|me)\s+and\s+(?P<person>{_CAP})\b", 0, _and_i),
        (
            rf"\b(?i:an?|the|my|our|their|his|her|this)\s+(?P<noun>[a-zé]+)\s+(?:called|named)\s+(?P<name>{_SPAN})",
            0,
            _named,
        ),
        (
            r"\b(?i:learn|learning|learned|learnt|speak|speaks|speaking|study|studying|studied|practi[cs]e|"
            r"practi[cs]ing|fluent in|lessons in|classes in)\s+(?P<lang>[A-Za-z]+)\b",
            0,
            _language,
        ),
        (
            r"\b(?:in|to|from|near|visit|visiting|visited)\s+(?P<place>"
            + "|".join(sorted((CITIES | COUNTRIES) - AMBIGUOUS_PLACES, key=len, reverse=True))
            + r")\b",
            0,
            _lower_place,
        ),
        (
            rf"{_I}\s+(?:really\s+|much\s+)?"
            rf"(?P<verb>prefer|like|love|enjoy|hate|dislike|can't stand|cannot stand)\s+{_THING}",
            0,
            _preference,
        ),
        (
            rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+(?:works|worked)\s+(?:at|for)\s+(?:the\s+)?(?P<target>{_SPAN})",
            0,
            _third_person("works_at", "organization"),
        ),
        (
            rf"\b(?P<person>{_CAP}(?:[ \t]+{_CAP})?)\s+(?:lives|lived)\s+in\s+(?:the\s+)?(?P<target>{_SPAN})",
            0,
            _third_person("lives_in", "location"),
        ),
    )
)
_CAP_SPAN = re.compile(rf"\b{_SPAN}")
_TOKEN = re.compile(r"\S+")
#: The two words before a position on the same line (skipping "the"): "visit the |Louvre" -> visit.
_BEFORE = re.compile(r"(?:([\w'\u2019]+)[ \t]+)?(?!the\b)([\w'\u2019]+)[ \t]+(?:the[ \t]+)?$", re.IGNORECASE)
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n])[^\w]*$")
_COORDINATED = re.compile(r",?[ \t]+(?:and|or|&)[ \t]+|,[ \t]*")
_CONCEPT = re.compile(
    r"\b(?:" + "|".join(re.escape(c) for c in sorted(CONCEPTS - CASED_CONCEPTS, key=len, reverse=True)) + r")\b"
)


def _cue(text: str, pos: int) -> str:
    """The word typing the span at ``pos`` ("in", "met" ...), or "" (none, or "to"/"from" used otherwise)."""
    match = _BEFORE.search(text, max(0, pos - 80), pos)
    if match is None:
        return ""
    before, word = match.group(1) or "", match.group(2).lower()
    if word == "to" and before.lower() not in TO_PLACE_VERBS:
        return ""  # "talk to Priyanka"
    if word == "from" and (
        before.lower() in FROM_NOT_PLACE or (before[:1].isupper() and before.lower() not in NOT_ENTITIES)
    ):
        return ""  # "an email from Priyanka", "Raj from Stripe"
    return word


def _candidates(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, name) of capitalised runs, split at pronouns, contractions and common words."""
    for match in _CAP_SPAN.finditer(text):
        run: list[tuple[int, int, str]] = []
        for tok in _TOKEN.finditer(match.group(0)):
            word = tok.group(0)
            base = _POSSESSIVE.sub("", word)
            stop = word not in CONNECTORS and _is_stop(base)
            if not stop:
                run.append((match.start() + tok.start(), match.start() + tok.start() + len(base), base))
            if stop or base != word:  # a possessive ends the name: "Taylor Swift's"
                yield from _trimmed(run)
                run = []
        yield from _trimmed(run)


def _trimmed(run: list[tuple[int, int, str]]) -> Iterator[tuple[int, int, str]]:
    while run and run[0][2] in CONNECTORS:
        run = run[1:]
    while run and run[-1][2] in CONNECTORS:
        run = run[:-1]
    if run and len(run) <= MAX_WORDS:
        yield run[0][0], run[-1][1], " ".join(w for _, _, w in run)


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
        last_end, last_kind = -1, None
        for start, end, span in _candidates(text):
            if span.lower() in builder.known_names():
                continue
            if span.lower() in VERB_NAMES and _SENTENCE_START.search(text, max(0, start - 20), start):
                continue  # "Mark it as done."
            kind = classify(span, before=_cue(text, start))
            if kind is None and last_kind is not None and _COORDINATED.fullmatch(text, last_end, start):
                kind = last_kind  # "in Austin, Boulder and Reno"
            if kind is not None and builder.entity(span, kind) is not None:
                last_end, last_kind = end, kind

    @staticmethod
    def _concepts(builder: _Builder, text: str) -> None:
        low = text.lower()
        for match in _CONCEPT.finditer(low):
            concept = match.group(0)
            if concept in builder.entities:
                continue
            if concept in COMMON_CONCEPTS:  # "I love cooking", "go running"; not "running late", "my coffee"
                before = re.findall(r"[a-z']+", low[max(0, match.start() - 40) : match.start()])[-3:]
                if not (before and before[-1] in CONCEPT_CUES) and not LIKE_CUES.intersection(before):
                    continue
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
