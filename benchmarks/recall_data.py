"""Synthetic long multi-session conversations with planted facts and labelled questions.

Used by ``benchmarks/recall.py``. Everything is drawn from a seeded ``random.Random``, so one seed always
gives the same conversations. A conversation is a user talking to an assistant over 15-20 sessions;
between the filler (chit-chat that reuses the facts' vocabulary, and short messages such as "ok") it
plants facts: said by the user, said by the assistant in answer to a request, updated later, dated,
ordered, spread over several sessions, or given as a short answer to the assistant's question. Each
question carries the exact texts of its evidence messages; every message text is unique within its
conversation and no evidence text occurs inside another message, so substring matching is unambiguous.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

START = date(2025, 1, 6)
CATEGORIES = ("single", "multi", "update", "temporal", "order", "assistant", "short")

# --------------------------------------------------------------------------------------------------
# data model


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    text: str
    timestamp: datetime
    session: int


@dataclass(frozen=True)
class Turn:
    user: Message
    assistant: Message


@dataclass(frozen=True)
class Session:
    index: int
    start: datetime
    turns: tuple[Turn, ...]

    @property
    def day(self) -> date:
        return self.start.date()


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    category: str
    evidence: tuple[str, ...]  # exact message texts; all of them are needed to answer
    answer: str
    related: tuple[tuple[str, str], ...] = ()  # (label, text): superseded or tentative statements, not scored


@dataclass(frozen=True)
class Conversation:
    index: int
    persona: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]

    def turns(self) -> list[Turn]:
        return [t for s in self.sessions for t in s.turns]

    def messages(self) -> list[Message]:
        return [m for t in self.turns() for m in (t.user, t.assistant)]


# --------------------------------------------------------------------------------------------------
# pools

PEOPLE = [
    "Anna", "Ben", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Liam", "Maya",
    "Nikhil", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wes", "Ximena", "Yusuf", "Zoe",
    "Aisha", "Bruno", "Chloe", "Diego", "Emil", "Freya", "Gabriel", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco",
    "Nora", "Oscar", "Priya", "Rafael", "Sofia", "Tomas", "Uma", "Victor", "Wanda", "Yara", "Zane",
]
PET_NAMES = [
    "Rufus", "Biscuit", "Pepper", "Mochi", "Juniper", "Waffles", "Clementine", "Ziggy", "Noodle", "Pickles",
    "Saffron", "Bramble", "Tofu", "Hazel", "Marmalade", "Pretzel", "Olive", "Chutney", "Maple", "Basil", "Fig",
    "Nutmeg", "Pumpkin", "Sprocket", "Dumpling", "Cricket", "Truffle", "Bagel", "Kiwi", "Mango",
]
DOG_BREEDS = [
    "beagle", "corgi", "border collie", "dachshund", "greyhound", "labrador", "whippet", "golden retriever",
    "shiba inu", "cocker spaniel",
]
CITIES = [
    "Lisbon", "Prague", "Denver", "Chicago", "Boston", "Seattle", "Austin", "Portland", "Montreal", "Vancouver",
    "Edinburgh", "Dublin", "Copenhagen", "Vienna", "Kyoto", "Osaka", "Melbourne", "Auckland", "Barcelona", "Valencia",
    "Porto", "Krakow", "Budapest", "Tallinn", "Reykjavik", "Marrakesh", "Lima", "Oaxaca", "Minneapolis", "Pittsburgh",
    "Nashville", "Savannah", "Santa Fe", "Halifax", "Bologna", "Seville", "Ljubljana", "Bergen", "Ghent", "Hanoi",
]
COMPANIES = [
    "Northwind Analytics", "Bluefin Robotics", "Calder & Finch", "Orchard Health", "Meridian Freight", "Lumen Bank",
    "Tidewater Games", "Copperleaf Energy", "Halcyon Labs", "Redwood Insurance", "Atlas Biotech", "Juniper Media",
    "Granite Logistics", "Pinecrest Software", "Silverline Airways", "Kestrel Security", "Harbor & Vale",
    "Quill Publishing", "Nimbus Cloud", "Foxglove Design",
]
JOBS = [
    "data analyst", "product designer", "nurse", "civil engineer", "high-school teacher", "backend developer",
    "accountant", "UX researcher", "pharmacist", "marketing manager", "architect", "physiotherapist",
    "project manager", "sound engineer", "lab technician", "copywriter", "sales lead", "paralegal",
    "veterinary nurse", "quality inspector",
]
HOBBIES = [
    "pottery", "salsa dancing", "rock climbing", "watercolour painting", "woodworking", "Brazilian jiu-jitsu",
    "life drawing", "improv comedy", "beekeeping", "sourdough baking", "fencing", "calligraphy", "swing dancing",
    "archery", "rowing", "knitting", "aerial yoga", "glassblowing",
]
STUDIOS = [
    "Clay & Co", "The Kiln Room", "Riverside Studio", "Northside Arts", "The Workshop on Fifth", "Blue Door Studio",
    "Granary Arts", "Loft 22", "The Long Room", "Studio Marigold",
]
FOODS = [
    "shakshuka", "pad see ew", "mushroom risotto", "bibimbap", "chicken katsu curry", "pierogi", "lamb tagine", "pho",
    "spanakopita", "jollof rice", "butter chicken", "paella", "miso ramen", "fish tacos", "moussaka", "khachapuri",
    "bun cha", "gnocchi with sage butter", "laksa", "ceviche",
]
BOOKS = [
    ("The Overstory", "Richard Powers"), ("Braiding Sweetgrass", "Robin Wall Kimmerer"), ("Piranesi", "Susanna Clarke"),
    ("Project Hail Mary", "Andy Weir"), ("The Remains of the Day", "Kazuo Ishiguro"),
    ("Station Eleven", "Emily St. John Mandel"), ("A Gentleman in Moscow", "Amor Towles"),
    ("The Left Hand of Darkness", "Ursula K. Le Guin"), ("Pachinko", "Min Jin Lee"),
    ("The Name of the Wind", "Patrick Rothfuss"), ("Circe", "Madeline Miller"), ("Educated", "Tara Westover"),
    ("The Goldfinch", "Donna Tartt"), ("Klara and the Sun", "Kazuo Ishiguro"), ("Homegoing", "Yaa Gyasi"),
    ("The Dispossessed", "Ursula K. Le Guin"), ("Middlemarch", "George Eliot"), ("The Road", "Cormac McCarthy"),
    ("Tomorrow, and Tomorrow, and Tomorrow", "Gabrielle Zevin"), ("Lessons in Chemistry", "Bonnie Garmus"),
    ("The Martian", "Andy Weir"), ("Never Let Me Go", "Kazuo Ishiguro"), ("Dune", "Frank Herbert"),
    ("The Secret History", "Donna Tartt"), ("Anxious People", "Fredrik Backman"), ("Cloud Atlas", "David Mitchell"),
    ("Beloved", "Toni Morrison"), ("The Hobbit", "J. R. R. Tolkien"),
]
MOVIES = [
    "Arrival", "Paddington 2", "Spirited Away", "The Grand Budapest Hotel", "Past Lives", "Moonlight", "Parasite",
    "Amélie", "The Princess Bride", "Knives Out", "Whiplash", "Inside Out", "Mad Max: Fury Road",
    "Lost in Translation", "Before Sunrise", "The Iron Giant", "Coco", "Little Women",
]
ILLNESSES = [
    ("a mild case of shingles", "antivirals"), ("bronchitis", "an inhaler"),
    ("iron-deficiency anaemia", "iron supplements"), ("a sinus infection", "antibiotics"),
    ("plantar fasciitis", "physio exercises"), ("migraines", "a preventive medication"),
    ("tendonitis in my elbow", "anti-inflammatories"), ("high blood pressure", "a low-dose pill"),
    ("an underactive thyroid", "levothyroxine"), ("gastritis", "antacids"), ("mild asthma", "a steroid inhaler"),
]
PURCHASES = [
    ("a Fujifilm X-T5 camera", "camera", 1700), ("an electric cargo bike", "cargo bike", 3200),
    ("a secondhand upright piano", "piano", 900), ("a standing desk", "desk", 480),
    ("a Breville espresso machine", "espresso maker", 650), ("a robot vacuum", "vacuum cleaner", 380),
    ("noise-cancelling headphones", "headphones", 320), ("a cast-iron Dutch oven", "casserole pot", 240),
    ("a Kindle Oasis", "e-reader", 250), ("a 65-inch OLED TV", "television", 1900), ("a sofa bed", "sofa bed", 1150),
    ("a sewing machine", "sewing machine", 430), ("a gravel bike", "bicycle", 2100),
]
INSTRUMENTS = [
    "cello", "ukulele", "trumpet", "bass guitar", "violin", "drums", "saxophone", "mandolin", "harp", "banjo",
    "clarinet", "accordion",
]
LANGUAGES = [
    "Portuguese", "Japanese", "Italian", "Korean", "Dutch", "Greek", "Turkish", "Polish", "Swahili", "Mandarin",
    "Czech", "Finnish", "Hungarian", "Tagalog",
]
TEAMS = [
    "the Chicago Cubs", "Celtic", "the Green Bay Packers", "Arsenal", "the Boston Celtics", "Borussia Dortmund",
    "the Seattle Sounders", "the Toronto Maple Leafs", "Everton", "the Denver Nuggets", "Ajax", "the Melbourne Storm",
]
PODCASTS = [
    "Field Notes from Nowhere", "The Long Commute", "Small Print Histories", "Orbit and Ember", "The Quiet Kitchen",
    "Unfinished Maps", "Deep Time Radio", "Night Shift Science", "The Loose Thread", "Rooftop Economics",
]
RESTAURANTS = [
    "Casa Lumbre", "The Copper Pot", "Saffron Alley", "Little Harbour", "Osteria Nove", "Kin Kitchen",
    "The Gilded Fig", "Taqueria Sol", "Bluebell Bistro", "Noodle Republic", "Maison Verte", "Ember & Oak",
]
STREETS = [
    "Elm Street", "Canal Road", "Market Lane", "Harbour Street", "Juniper Avenue", "Mill Road", "Church Street",
    "Kings Parade", "Bridge Street", "Orchard Way",
]
CUISINES = ["Mexican", "Thai", "Georgian", "Lebanese", "Sichuan", "Ethiopian", "Peruvian", "Basque", "Vietnamese"]
BANDS = [
    "Fleet Foxes", "Khruangbin", "The National", "Big Thief", "Bon Iver", "Phoebe Bridgers", "Arctic Monkeys", "Haim",
    "Vampire Weekend", "Little Simz", "Sigur Rós", "Radiohead", "Wet Leg", "Japanese Breakfast",
]
COLOURS = [
    "sage green", "terracotta", "navy blue", "mustard yellow", "dusty pink", "charcoal grey", "teal", "burgundy",
    "cream", "olive green",
]
CAR_MODELS = [
    "Subaru Outback", "Toyota RAV4", "Volvo XC40", "Honda Civic", "Mazda CX-5", "Skoda Octavia", "VW ID.4",
    "Tesla Model 3", "Ford Maverick", "Hyundai Ioniq 5",
]
PHONES = ["Pixel 8", "iPhone 15", "Galaxy S24", "Fairphone 5", "iPhone 13 mini", "OnePlus 12", "Pixel 7a"]
VEG = [
    "cherry tomatoes", "courgettes", "chillies", "runner beans", "sugar snap peas", "kale", "strawberries", "basil",
    "aubergines", "cucumbers",
]
COFFEES = [
    "flat white", "oat-milk cortado", "iced americano", "cardamom latte", "double espresso", "dirty chai",
    "cold brew with a splash of milk", "macchiato",
]
SCHOOLS = [
    "Hillview Primary", "Riverside Elementary", "St Anne's", "Oakwood Academy", "Lakeside Montessori",
    "Maplewood Elementary", "Greenfield School", "Northgate Primary",
]
ORGS = [
    "the Eastside food bank", "a cat rescue shelter", "the library's literacy programme", "a community garden",
    "the riverside cleanup crew", "a refugee welcome centre", "the children's hospital radio", "a bike repair co-op",
]
SPORTS = [
    "five-a-side football", "volleyball", "ultimate frisbee", "tennis", "badminton", "pickleball", "squash",
    "basketball", "water polo",
]
ALLERGENS = [
    "peanuts", "shellfish", "penicillin", "cats", "birch pollen", "sesame", "kiwi fruit", "latex", "wasp stings",
    "eggs",
]
GIFTS = [
    "a pottery class voucher", "a vintage record player", "a personalised star map", "a weekend spa pass",
    "a leather-bound journal", "a hot-air balloon ride", "a coffee roaster subscription", "a silk scarf",
    "a beginner's telescope",
]
EXERCISES = ["goblet squats", "Romanian deadlifts", "push-ups", "kettlebell swings", "walking lunges", "glute bridges"]
DOCUMENTS = ["passport", "driving licence", "car insurance", "gym membership", "home insurance", "parking permit"]
DISHES = [
    "lemon-garlic salmon traybake", "chickpea and spinach curry", "sheet-pan gnocchi with peppers",
    "black bean quesadillas", "miso-glazed aubergine", "prawn fried rice", "one-pot orzo with tomatoes",
    "halloumi and couscous salad",
]
PROFESSIONALS = ["dentist", "optician", "physio", "GP", "dermatologist", "hairdresser"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
TIMES = ["8:30am", "9am", "10:15am", "11:45am", "1pm", "2:30pm", "3pm", "4:45pm", "5:20pm"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
]
ROOMS = ["kitchen", "bathroom", "hallway", "spare bedroom", "garage", "home office", "living room"]
QUIZ_NAMES = ["Quizteama Aguilera", "The Know-It-Owls", "Les Quizerables", "Agatha Quiztie", "The Smarty Pints"]
WINES = ["a Rioja reserva", "a Sancerre", "an Oregon pinot noir", "a Barolo", "a Grüner Veltliner", "a Douro red"]
COURSES = [
    "Intro to astronomy", "Bookbinding", "Conversational Italian", "Furniture restoration", "Creative writing",
    "Wine tasting for beginners",
]
TV_SHOWS = [
    "Severance", "The Bear", "Slow Horses", "Shrinking", "Only Murders in the Building", "Bluey", "Ted Lasso",
    "The Great British Bake Off", "Succession", "Blue Eye Samurai",
]
NEWS = [
    "laying off a chunk of its staff", "opening an office downtown", "being bought by a bigger rival",
    "trialling a four-day week", "recalling one of its products", "moving everyone back to the office",
]
CONCEPTS = [
    ("compound interest", "Interest is added to the balance, so next period's interest is earned on the interest "
     "too; over decades that snowball matters more than the rate itself."),
    ("inflation", "Prices rising across the economy, so the same money buys less each year; central banks usually "
     "aim for about two percent."),
    ("a VPN", "A VPN wraps your traffic in an encrypted tunnel to another server, so the local network only sees "
     "that you are talking to the VPN, not which sites you visit."),
    ("the greenhouse effect", "Gases like carbon dioxide let sunlight in but absorb the heat the ground radiates "
     "back, which keeps the planet warmer than it would otherwise be."),
    ("index funds", "An index fund simply buys everything in a market index, so fees stay low and you get the "
     "market's average return instead of betting on a manager."),
    ("jet lag", "Your body clock keeps running on the old time zone for a few days; daylight at the right hours is "
     "the strongest signal to reset it."),
    ("the rule of 72", "Divide 72 by the yearly growth rate to estimate how many years it takes to double: at 6% "
     "that is roughly twelve years."),
    ("a heat pump", "A heat pump moves heat instead of making it, pulling warmth out of outside air or ground, so "
     "it can deliver three units of heat per unit of electricity."),
    ("the placebo effect", "People often feel better after a treatment with no active ingredient, because "
     "expectation changes how symptoms such as pain are perceived."),
    ("a credit score", "A number lenders use to guess how likely you are to repay, built mostly from your payment "
     "history and how much of your available credit you use."),
    ("how tides work", "The Moon's gravity pulls the oceans into two bulges, one facing it and one opposite, and the "
     "Earth rotates through both, giving two high tides a day."),
    ("leap years", "The year is about 365.25 days long, so an extra day every four years keeps the calendar aligned "
     "with the seasons, minus a few century years."),
    ("sourdough starters", "A starter is flour and water colonised by wild yeast and lactic bacteria; feeding it "
     "keeps the culture active enough to raise bread."),
    ("how vaccines work", "A vaccine shows the immune system a harmless piece or copy of a germ, so it builds "
     "memory cells that react quickly to the real thing."),
    ("machine learning", "Instead of writing rules by hand, you show a program many examples and it adjusts its "
     "internal numbers until its outputs match the examples."),
    ("the Mediterranean diet", "Lots of vegetables, legumes, whole grains, olive oil and fish, with little red "
     "meat; it is linked to better heart health."),
    ("interval training", "Short bursts of hard effort alternated with recovery, which improves fitness in less "
     "time than steady exercise."),
    ("composting", "Microbes break down kitchen scraps and garden waste into humus; mixing greens and browns and "
     "keeping it moist speeds things up."),
    ("espresso extraction", "Hot water is pushed through finely ground coffee at high pressure for about 25 seconds; "
     "too fast tastes sour, too slow tastes bitter."),
    ("daylight saving time", "Clocks move forward an hour in spring to shift daylight into the evening, and back in "
     "autumn; the benefits are still debated."),
    ("a mortgage offset account", "Savings held in the offset account are subtracted from the loan balance before "
     "interest is calculated, so they cut the interest you pay."),
    ("noise-cancelling headphones", "Microphones pick up outside sound and the headphones play an inverted copy, "
     "so the two waves cancel before they reach your ear."),
    ("photosynthesis", "Plants use light energy to turn carbon dioxide and water into sugar, releasing oxygen as a "
     "by-product."),
    ("the stock market", "A marketplace where shares of companies change hands; prices move with what buyers "
     "expect those companies to earn."),
    ("blood pressure numbers", "The top number is the pressure while the heart beats, the bottom one while it "
     "rests between beats; around 120 over 80 is typical."),
    ("minimalism", "Owning fewer things on purpose, so that what you keep is used and valued and less time goes "
     "into managing stuff."),
]
TIPS = [
    ("sleeping better", "Keep the same wake-up time every day, dim the lights an hour before bed and keep the "
     "bedroom cool."),
    ("staying focused", "Work in 25-minute blocks with your phone in another room, then take a five-minute break."),
    ("drinking more water", "Keep a bottle on your desk and refill it every time you finish a task."),
    ("getting up early", "Move your alarm 15 minutes earlier each week and get daylight right after waking."),
    ("keeping plants alive", "Most houseplants die from overwatering: check the soil with a finger first."),
    ("saving on groceries", "Plan meals for the week, shop with a list and buy staples in bulk."),
    ("learning to meditate", "Start with five minutes of counting breaths; when your mind wanders, just start again."),
    ("packing light", "Pick one colour palette, roll your clothes and plan to do laundry once."),
    ("running in the cold", "Dress as if it were ten degrees warmer and cover your hands and ears."),
    ("writing a cover letter", "Open with why this role, give two concrete results and keep it under a page."),
    ("stretching after desk work", "Every hour, stand up, roll your shoulders and stretch your hip flexors."),
    ("cutting down on sugar", "Swap sweet drinks first; that is where most hidden sugar comes from."),
]
SHORT_USER = [
    "ok", "okay", "thanks!", "thank you", "haha yes", "lol", "nice", "cool", "got it", "makes sense", "true",
    "fair enough", "sounds good", "perfect, thanks", "hmm ok", "yep", "right", "oh nice", "ha, fair", "will do",
    "gotcha", "brilliant", "noted", "sure", "interesting", "oh wow", "no worries", "good point", "exactly",
    "ha!", "cheers", "amazing", "I see", "alright", "yes please", "not really", "maybe later", "agreed",
    "that's helpful", "hmm", "uh huh", "totally", "love that", "so true", "oops", "yeah",
]
SHORT_SUFFIX = ["", "", "!", " :)", " 👍", "!!", ".", " haha"]
SHORT_REPLY = [
    "Anytime!", "Happy to help.", "Glad that's useful.", "You're welcome.", "Of course.", "Sure thing.",
    "No problem at all.", "Great.", "Ha, indeed.", "Right?", "Good to hear.", "Always here.",
]
SHORT_REPLY_TAIL = [
    "", "Anything else on your mind?", "Let me know how it goes.", "Shout if you need more.",
    "Want to keep going?", "I'm around if anything comes up.", "Enjoy the rest of your day.",
    "Tell me more whenever you like.", "Happy to dig in further.", "Good luck with it!",
]

FOLLOWUPS = [
    "How are you feeling about it?", "Want me to keep a note of that?", "Anything I can help with there?",
    "Tell me more whenever you like.", "What's next on that front?", "I'll keep that in mind for later.",
    "How did everyone else take it?", "Keep me posted on how it goes.", "Is there anything you want to plan around it?",
    "Let me know if you want ideas.", "That's worth marking somehow.", "Do you want to talk it through?",
]
#: Per filler topic: second sentences for the user, middle sentences for the assistant.
FILLER_MORE: dict[str, tuple[list[str], list[str]]] = {
    "pets": (["Honestly it made my whole afternoon.", "I don't know how people keep up with that energy.",
              "Not my circus, not my dog, thankfully.", "We laughed about it for ages."],
             ["Dogs that clever usually just need more to do, like puzzle feeders or longer walks.",
              "A bit of training and a solid routine usually calms that kind of mischief down.",
              "Some breeds were built to work all day, so the energy has to go somewhere.",
              "Stories like that are half the joy of knowing a dog owner."]),
    "friend": (["Part of me wants to visit this summer.", "I keep thinking about what it would be like to live there.",
                "We used to share a flat years ago.", "It's funny how people end up in such different places."],
               ["Cities always look different once you live there instead of just visiting.",
                "Cost of living has become the deciding factor for a lot of people lately.",
                "Visiting a friend who lives somewhere is the best way to see a city like a local.",
                "Staying in touch across distances takes effort, but it keeps friendships alive."]),
    "news": (["A few people at work were talking about it.", "Feels like every week there's something new.",
              "Not sure what to make of it yet.", "Wild times in that industry."],
             ["Announcements like that often look different once the full details come out.",
              "Big company changes tend to ripple out to suppliers and customers for months.",
              "Early reports are often incomplete, so I'd wait for an official statement.",
              "It's a reminder of how quickly things can shift in that sector."]),
    "weather": (["My plants are confused.", "I keep dressing wrong for it.", "The dog hates it too.",
                 "Everyone at work is grumpy about it."],
                ["A warm drink and a good playlist can rescue a day like that.",
                 "Spells like this rarely last long, even if it feels endless.",
                 "It's a good excuse to try an indoor project you've been putting off.",
                 "Layers are the trick when the forecast can't make up its mind."]),
    "tv": (["Everyone online is obsessed with it.", "I might binge the rest this weekend.",
            "The lead actor is brilliant.", "My partner fell asleep halfway through."],
           ["Shows like that often take a few episodes to find their rhythm.",
            "Good writing and a great cast can carry even a slow start.",
            "Bingeing can be fun, but spacing episodes out makes the twists land harder.",
            "It's always nice to have something to look forward to in the evenings."]),
    "work": (["I need a holiday.", "At least the coffee was decent.", "Tomorrow has to be better.",
              "Nobody else seemed bothered, which bothered me more."],
             ["Blocking out focus time in your calendar can protect you from days like that.",
              "A short walk between meetings does wonders for concentration.",
              "It might be worth suggesting a clear agenda and a hard stop next time.",
              "Days like that are draining, so try to do something restful this evening."]),
    "cooking": (["I'll try again next week.", "The kitchen smelled amazing.", "I took photos for proof.",
                 "Used way too much garlic, no regrets."],
                ["Most recipes need two or three attempts before they feel natural.",
                 "Tasting as you go and seasoning at the end makes a big difference.",
                 "Home cooking is one of the best ways to unwind after a long day.",
                 "Sharing a good meal with people is half the point of cooking."]),
    "sports": (["The referee was terrible.", "My whole group chat is in mourning.", "We watched it at the pub.",
                "I'm still recovering emotionally."],
               ["Seasons are long, and one result rarely decides anything.",
                "Watching with friends makes even a bad result more fun.",
                "Fans always remember the dramatic finishes longest.",
                "Form goes up and down; it's the consistency over months that counts."]),
    "others": (["I might give it a go myself.", "Everyone has opinions about it.", "I just nodded along.",
                "It's become a running joke at this point."],
               ["It's funny how enthusiasm spreads through a group of friends.",
                "People's new obsessions often say a lot about what they need right now.",
                "Sometimes a recommendation lands better when you're ready for it.",
                "There's nothing wrong with letting someone enjoy their new thing."]),
    "life": (["Exciting stuff, I know.", "Adulting, basically.", "Somehow still tired.",
              "At least the flat is tidy now."],
             ["Quiet days like that keep everything else running smoothly.",
              "Batching errands into one day frees up the rest of the week.",
              "It's worth rewarding yourself with something nice after a chores day.",
              "Those small jobs add up to a calmer week ahead."]),
}

# --------------------------------------------------------------------------------------------------
# building blocks


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _key(item: Any) -> str:
    return str(item[0] if isinstance(item, tuple) else item)


class _Builder:
    """Random choices plus the uniqueness bookkeeping of one conversation."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.texts: set[str] = set()
        self.evidence: list[str] = []
        self.all_texts: list[str] = []
        self.used: dict[str, list[str]] = {}

    def take(self, key: str, items: Sequence[T]) -> T:
        """A value of ``items`` not yet taken under ``key`` in this conversation."""
        used = self.used.setdefault(key, [])
        free = [i for i in items if _key(i) not in used]
        item = self.rng.choice(free)
        used.append(_key(item))
        return item

    def free(self, key: str, items: Sequence[T]) -> T:
        """A value of ``items`` not taken under ``key`` (without taking it): for filler."""
        used = self.used.get(key, [])
        return self.rng.choice([i for i in items if _key(i) not in used])

    def pick(self, items: Sequence[T]) -> T:
        return self.rng.choice(items)

    def ok(self, text: str, evidence: bool) -> bool:
        if not text or text in self.texts:
            return False
        if any(e in text for e in self.evidence):
            return False
        return not (evidence and any(text in t for t in self.all_texts))

    def say(self, make: Callable[[], str], *, evidence: bool = False, tries: int = 300) -> str:
        """A message from ``make`` that is unique (retried with fresh random choices)."""
        text = ""
        for _ in range(tries):
            text = " ".join(make().split())
            if self.ok(text, evidence):
                self.texts.add(text)
                self.all_texts.append(text)
                if evidence:
                    self.evidence.append(text)
                return text
        raise RuntimeError(f"could not generate a unique message; last attempt: {text!r}")

    def ack(self, acks: Sequence[str]) -> str:
        """An assistant reply to a planted fact: an acknowledgement plus a follow-up."""
        return self.say(lambda: f"{self.pick(acks)} {self.pick(FOLLOWUPS)}")

    def variant(self, templates: Sequence[str], **slots: Any) -> Callable[[], str]:
        return lambda: self.pick(templates).format(**slots)


@dataclass
class _Q:
    text: str
    category: str
    evidence: tuple[str, ...]
    answer: str
    related: tuple[tuple[str, str], ...] = ()


Pair = tuple[str, str]  # (user message, assistant message)


@dataclass
class _Episode:
    """Facts to plant: ``len(windows)`` parts, each ``sizes[i]`` consecutive turns in one session.

    ``build(days)`` (called once the parts have sessions, in order) returns the turns of each part and
    the questions about them.
    """

    kind: str
    windows: list[tuple[float, float]]
    sizes: list[int]
    build: Callable[[list[date]], tuple[list[list[Pair]], list[_Q]]]
    dated: bool = False  # "today" events: at most one per session, so each date question has one answer
    sessions: list[int] = field(default_factory=list)


def _when(b: _Builder, dated: bool) -> str:
    if dated:
        return b.pick(["today", "this morning", "earlier today", "this afternoon"])
    return b.pick(["last weekend", "a few days ago", "on Saturday", "recently", "last week"])


# --------------------------------------------------------------------------------------------------
# fact kinds said by the user (one turn; some also get a temporal question)

SingleSpec = tuple[list[str], list[str], list[str], str, list[str]]  # user, ack, questions, answer, temporal qs


def _single_specs(b: _Builder, p: dict[str, str], dated: bool) -> dict[str, Callable[[], SingleSpec]]:
    w = _when(b, dated)

    def dog() -> SingleSpec:
        breed, pet = b.take("breed", DOG_BREEDS), b.take("pet", PET_NAMES)
        return ([f"We adopted a {breed} named {pet} from the shelter {w}.",
                 f"I finally did it and adopted a {breed} called {pet} {w}!",
                 f"Meet the newest family member: a {breed} puppy, {pet}, who came home with us {w}."],
                [f"Congratulations on the new dog! {cap(breed)}s are full of energy.",
                 "That's wonderful news, shelter dogs make such loyal companions.",
                 "A new puppy! Stock up on chew toys and patience."],
                ["What's my dog called?", "What name did we give the puppy we got?",
                 "Remind me, what is our dog's name?"],
                pet, ["When did we bring our dog home?", "On what date did I get the dog?"])

    def diagnosis() -> SingleSpec:
        illness, med = b.take("illness", ILLNESSES)
        return ([f"The doctor called {w}: it's {illness}, so I'm on {med} for a few weeks.",
                 f"Got my test results {w} and it turns out I have {illness}. Starting {med} tomorrow."],
                ["I'm sorry to hear that. Rest up and follow the treatment plan.",
                 "Oof, that's no fun. At least you know what it is now."],
                ["What health problem was I diagnosed with?", "What did my doctor find was wrong with me?"],
                illness, ["When did I get my diagnosis?", "On what day did I hear back from the doctor?"])

    def half_marathon() -> SingleSpec:
        city = b.take("city", CITIES)
        t = f"1:{b.rng.randint(38, 59)}:{b.rng.randint(10, 59):02d}"
        return ([f"I ran the {city} half marathon {w} in {t}!",
                 f"Finished the {city} half {w} with a time of {t}, a new personal best."],
                ["That's a fantastic result, all that training paid off!",
                 "Huge congratulations! Make sure you refuel and stretch."],
                ["What was my finishing time in the half marathon?", "How fast did I run the 21k race?"],
                t, ["When did I run the half marathon?", "What day was my half-marathon race?"])

    def first_class() -> SingleSpec:
        hobby, studio = b.take("hobby", HOBBIES), b.take("studio", STUDIOS)
        return ([f"I had my first {hobby} class {w} at a place called {studio}.",
                 f"Went to my very first {hobby} session {w}; {studio} is such a cosy spot."],
                [f"How fun! {cap(hobby)} is a great way to switch off.",
                 "Starting something new takes guts. How did it feel?"],
                [f"Where do I take my {hobby} lessons?", f"What's the name of the studio where I learn {hobby}?"],
                studio, [f"When did I start {hobby}?", f"What day was my first {hobby} lesson?"])

    def driving_test() -> SingleSpec:
        attempt = b.pick(["first", "second", "third"])
        return ([f"I passed my driving test {w} on the {attempt} attempt!",
                 f"Driving test: passed {w}, {attempt} try. I'm officially allowed on the road."],
                ["Congratulations! Time to plan a road trip.", "Amazing, that's a real milestone."],
                ["How many tries did it take me to pass the driving exam?"],
                attempt, ["When did I get my driving licence?", "On what date did I pass my road test?"])

    def wrist() -> SingleSpec:
        side = b.pick(["left", "right"])
        return ([f"I tripped on the stairs {w} and broke my {side} wrist.",
                 f"Bad news: fractured my {side} wrist falling off my bike {w}."],
                ["Ouch, I'm so sorry. Keep it elevated and rest.", "That sounds painful. Heal quickly!"],
                ["Which arm did I injure?", "Which of my wrists is in a cast?"],
                side, ["When did I hurt my wrist?", "On what day did I have the accident with my wrist?"])

    def car() -> SingleSpec:
        colour, model = b.take("colour", COLOURS), b.take("car", CAR_MODELS)
        return ([f"We sold the old hatchback and picked up a {colour} {model} {w}.",
                 f"Collected our new car {w}: a {colour} {model}."],
                ["Nice upgrade! Enjoy the new wheels.", "Exciting, a new car always feels like a fresh start."],
                ["What car do we drive now?", "Which model of vehicle did we buy?"],
                model, ["When did we get the new car?", "On what date did we take delivery of the car?"])

    def sibling_job() -> SingleSpec:
        rel, name = b.pick(["sister", "brother", "cousin"]), b.take("person", PEOPLE)
        job, company = b.pick(JOBS), b.take("company", COMPANIES)
        return ([f"My {rel} {name} just started a new job as a {job} at {company}.",
                 f"Big news in the family: {name}, my {rel}, got hired by {company} as a {job}."],
                [f"Good for {name}! New jobs are exciting.", "That's great news, tell them congratulations from me."],
                [f"Where does my {rel} work now?", f"Which employer did {name} join?"], company, [])

    def fav_food() -> SingleSpec:
        food = b.take("food", FOODS)
        return ([f"If I could only eat one dish forever it would be {food}.",
                 f"Nothing beats {food}; it's my go-to comfort meal."],
                ["Good choice, comfort food matters.", "I can see the appeal, that's a classic."],
                ["What's my all-time favourite meal?", "Which dish do I love above all others?"], food, [])

    def reading() -> SingleSpec:
        title, author = b.take("book", BOOKS)
        return ([f"I'm halfway through '{title}' by {author} and I can't put it down.",
                 f"Currently glued to '{title}'; {author} really knows how to write."],
                ["Nothing like a book you can't put down.", "Ooh, let me know how it ends for you."],
                ["Which book am I hooked on at the moment?", "What novel did I say I couldn't stop reading?"],
                title, [])

    def purchase() -> SingleSpec:
        item, what, base = b.take("purchase", PURCHASES)
        price = int(round(base * b.rng.uniform(0.85, 1.15), -1))
        return ([f"I finally splurged on {item}: {price} dollars, ouch.",
                 f"Treated myself to {item}; it came to ${price} after tax."],
                ["Sometimes a good tool is worth it.", "Enjoy it, you've been talking about that for a while."],
                [f"How much did my new {what} cost?", f"What did I pay for the {what}?"], str(price), [])

    def partner_birthday() -> SingleSpec:
        partner = p["partner"]
        month, day = b.pick(MONTHS), b.rng.randint(1, 28)
        return ([f"{partner}'s birthday is on {month} {day} and I haven't planned anything yet.",
                 f"Note to self: {partner} has a birthday coming on {month} {day}."],
                ["Plenty of time to plan something nice.", "We can brainstorm ideas whenever you like."],
                ["What date is my partner's birthday?", f"When does {partner} celebrate turning a year older?"],
                f"{month} {day}", [])

    def instrument_teacher() -> SingleSpec:
        inst, name = b.take("instrument", INSTRUMENTS), b.take("person", PEOPLE)
        return ([f"I've started {inst} lessons with a teacher named {name}.",
                 f"My {inst} teacher, {name}, says I'm making real progress."],
                ["That's lovely, music is such a good outlet.", "Practice a little every day and it adds up."],
                [f"Who gives me my {inst} lessons?", "What's the name of my music teacher?"], name, [])

    def commute() -> SingleSpec:
        n, line = b.rng.randint(18, 75), b.pick(["Red Line", "number 14 bus", "ferry", "tram", "express train"])
        return ([f"My commute is {n} minutes each way on the {line}.",
                 f"It takes me {n} minutes door to door on the {line} every morning."],
                ["That's a good chunk of time for podcasts at least.", "Not bad, could be worse."],
                ["How long is my trip to work?", "How many minutes do I spend getting to the office?"], str(n), [])

    def team() -> SingleSpec:
        t = b.take("team", TEAMS)
        return ([f"I've been supporting {t} since I was seven.",
                 f"Win or lose, I'll always support {t}."],
                ["Loyalty through thick and thin, respect.", "Sports fandom is a lifelong commitment."],
                ["Which team do I root for?", "Who do I cheer for in sports?"], t.removeprefix("the "), [])

    def kid_school() -> SingleSpec:
        kid, school = b.take("person", PEOPLE), b.take("school", SCHOOLS)
        return ([f"Our son {kid} starts at {school} in September.",
                 f"We got the letter: {kid} got a place at {school}!"],
                ["That's a big milestone for him.", "Exciting times, new school, new friends."],
                ["Which school will my son attend?", f"Where is {kid} going to be a pupil?"], school, [])

    def neighbour() -> SingleSpec:
        name, job = b.take("person", PEOPLE), b.take("job", JOBS)
        return ([f"Our new neighbour {name} turns out to be a {job}.",
                 f"Met the people next door; {name} works as a {job}."],
                ["Nice to know who lives next door.", "Good neighbours are worth a lot."],
                ["What does my new neighbour do for work?", "What's the job of the person who moved in next door?"],
                job, [])

    def language() -> SingleSpec:
        lang = b.take("language", LANGUAGES)
        return ([f"I signed up for {lang} lessons on Tuesday evenings.",
                 f"Starting {lang} classes next week, wish me luck with the grammar."],
                ["Learning a language is so rewarding.", "Consistency beats intensity with languages."],
                ["Which language am I studying?", "What language course did I enrol in?"], lang, [])

    def best_friend() -> SingleSpec:
        name, city = b.take("person", PEOPLE), b.take("city", CITIES)
        return ([f"My best friend {name} lives in {city}, so I visit whenever I can.",
                 f"{name}, my oldest friend, has been living in {city} for years now."],
                ["Long-distance friendships take effort but they're worth it.",
                 "Visits are the best excuse to travel."],
                ["Where does my best friend live?", f"Which city is {name} based in?"], city, [])

    def veg() -> SingleSpec:
        v = b.take("veg", VEG)
        return ([f"This year I'm growing {v} on the balcony.", f"The balcony garden is all {v} this season."],
                ["Homegrown always tastes better.", "Nice! Keep an eye on watering when it gets hot."],
                ["What am I growing at home this year?", "Which plants did I put on the balcony?"], v, [])

    def manager() -> SingleSpec:
        name = b.take("person", PEOPLE)
        return ([f"My manager is called {name}; she's tough but fair.",
                 f"{name}, my boss, finally signed off on my vacation request."],
                ["A fair manager makes a big difference.", "Good, you deserve the time off."],
                ["What is my boss's name?", "Who do I report to at work?"], name, [])

    def coffee() -> SingleSpec:
        c = b.take("coffee", COFFEES)
        return ([f"My usual order at the café is a {c}.",
                 f"The barista has my {c} ready before I even reach the counter."],
                ["A regular order is a small daily luxury.", "That's the sign of a true regular."],
                ["What do I normally get at the coffee shop?", "What's my regular café drink?"], c, [])

    def podcast() -> SingleSpec:
        pod = b.take("podcast", PODCASTS)
        return ([f"I've been bingeing a podcast called '{pod}' on my runs.",
                 f"'{pod}' is the only podcast I listen to while running."],
                ["Good podcasts make the miles go faster.", "A good show really helps on long runs."],
                ["Which show do I listen to when I'm out jogging?", "What's the audio series I mentioned for my runs?"],
                pod, [])

    def volunteer() -> SingleSpec:
        org = b.take("org", ORGS)
        return ([f"I volunteer at {org} every other Saturday.",
                 f"Spent the morning helping out at {org} like I do every other weekend."],
                ["That's really generous of you.", "Volunteering is good for the soul."],
                ["Where do I do volunteer work?", "What organisation do I give my time to?"], org, [])

    def grandmother() -> SingleSpec:
        age = b.rng.randint(84, 99)
        return ([f"My grandmother turned {age} this week, still sharp as a tack.",
                 f"We celebrated Grandma's {age}th birthday on Sunday."],
                ["What a wonderful age! Give her my best.", "That's amazing, she sounds like a character."],
                ["How old is my grandmother now?", "What age did Grandma just reach?"], str(age), [])

    def floor() -> SingleSpec:
        nth = b.pick(["third", "fifth", "seventh", "ninth", "eleventh", "twelfth"])
        return ([f"Our flat is on the {nth} floor and the lift is broken again.",
                 f"Living on the {nth} floor means I get my steps in every day."],
                ["Stairs are free cardio, at least.", "Hopefully they fix it soon."],
                ["Which storey is our apartment on?", "How high up do we live?"], nth, [])

    return {
        "dog": dog, "diagnosis": diagnosis, "half_marathon": half_marathon, "first_class": first_class,
        "driving_test": driving_test, "wrist": wrist, "car": car, "sibling_job": sibling_job, "fav_food": fav_food,
        "reading": reading, "purchase": purchase, "partner_birthday": partner_birthday,
        "instrument_teacher": instrument_teacher, "commute": commute, "team": team, "kid_school": kid_school,
        "neighbour": neighbour, "language": language, "best_friend": best_friend, "veg": veg, "manager": manager,
        "coffee": coffee, "podcast": podcast, "volunteer": volunteer, "grandmother": grandmother, "floor": floor,
    }


SINGLE_KINDS = (
    "dog", "diagnosis", "half_marathon", "first_class", "driving_test", "wrist", "car", "sibling_job", "fav_food",
    "reading", "purchase", "partner_birthday", "instrument_teacher", "commute", "team", "kid_school", "neighbour",
    "language", "best_friend", "veg", "manager", "coffee", "podcast", "volunteer", "grandmother", "floor",
)
TEMPORAL_KINDS = ("dog", "diagnosis", "half_marathon", "first_class", "driving_test", "wrist", "car")
#: Kinds that cannot go together in one conversation (they would make a question's answer incomplete).
EXCLUSIVE = (("kid_school", "kids"), ("instrument_teacher", "instruments"), ("language", "languages"))


def _single(b: _Builder, p: dict[str, str], kind: str, dated: bool) -> _Episode:
    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        users, acks, questions, answer, temporal = _single_specs(b, p, dated)[kind]()
        u = b.say(b.variant(users), evidence=True)
        a = b.ack(acks)
        qs = [_Q(b.pick(questions), "single", (u,), answer)]
        if dated and temporal:
            qs.append(_Q(b.pick(temporal), "temporal", (u,), days[0].isoformat()))
        return [[(u, a)]], qs

    return _Episode(kind, [(0.0, 1.0)], [1], build, dated=dated)


# --------------------------------------------------------------------------------------------------
# facts said by the assistant


def _assistant(b: _Builder, p: dict[str, str], kind: str) -> _Episode:
    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        partner = p["partner"]
        if kind == "book_rec":
            (liked, _), (title, author) = b.take("book", BOOKS), b.take("book", BOOKS)
            req = [f"Can you suggest a novel for my holiday? I loved '{liked}'.",
                   f"I need something new to read; I really enjoyed '{liked}'. Any ideas?"]
            said = [f"I'd recommend '{title}' by {author}, given how much you liked '{liked}'.",
                    f"Try '{title}' by {author}; it has a lot of what made '{liked}' special."]
            qs, answer = ["Which book did you suggest to me?", "What did you tell me to read on holiday?"], title
        elif kind == "appointment":
            prof, day, time = b.take("prof", PROFESSIONALS), b.pick(WEEKDAYS), b.pick(TIMES)
            req = [f"Please book me in with the {prof} sometime this week.",
                   f"Could you sort out a {prof} appointment for me?"]
            said = [f"Done, your {prof} appointment is set for {day} at {time}.",
                    f"You're booked with the {prof} on {day} at {time}."]
            qs = [f"When am I seeing the {prof}?", f"What slot did you get me with the {prof}?"]
            answer = f"{day} {time}"
        elif kind == "recipe":
            dish, n = b.take("dish", DISHES), b.rng.randint(15, 35)
            req = ["I need a quick dinner idea for tonight, nothing fancy.",
                   "What can I cook in under forty minutes with what's in the fridge?"]
            said = [f"For a quick weeknight dinner, try a {dish}; it takes about {n} minutes.",
                    f"A {dish} would work well, roughly {n} minutes start to finish."]
            qs, answer = ["What meal did you propose when I wanted something fast to cook?",
                          "Which dinner idea did you give me?"], dish
        elif kind == "restaurant":
            cuisine, rest, street = b.take("cuisine", CUISINES), b.take("restaurant", RESTAURANTS), b.pick(STREETS)
            req = [f"Where should I take my parents for {cuisine} food?",
                   f"Any good {cuisine} places around here for a family dinner?"]
            said = [f"{rest} on {street} is your best bet for {cuisine}.",
                    f"I'd go with {rest} on {street}; their {cuisine} menu is excellent."]
            qs, answer = ["Which restaurant did you recommend to me?",
                          f"Where did you say I should eat {cuisine} with my parents?"], rest
        elif kind == "workout":
            sets, ex = b.rng.randint(2, 5), b.take("exercise", EXERCISES)
            req = ["Can you give me a simple strength routine? My back has been sore.",
                   "I want to get stronger at home without equipment. Where do I start?"]
            said = [f"Start with {sets} sets of {ex} three times a week and build from there.",
                    f"Begin with {ex}: {sets} sets, three days a week, and add reps as it gets easier."]
            qs, answer = ["Which exercise did you tell me to begin with?",
                          "What was the main move in the routine you gave me?"], ex
        elif kind == "gift":
            gift = b.take("gift", GIFTS)
            req = [f"{partner}'s birthday is coming up and I'm stuck for a present.",
                   f"I have no idea what to get {partner} for our anniversary."]
            said = [f"Something like {gift} would make a thoughtful present for {partner}.",
                    f"How about {gift}? {partner} would love it."]
            qs, answer = [f"What present idea did you give me for {partner}?",
                          "What did you propose I buy for my partner?"], gift
        elif kind == "reminder":
            doc, month, dom = b.take("document", DOCUMENTS), b.pick(MONTHS), b.rng.randint(1, 28)
            req = [f"Remind me about the {doc} renewal, it expires soon.",
                   f"Can you make sure I don't forget to renew my {doc}?"]
            said = [f"I'll remind you to renew your {doc} on {month} {dom}.",
                    f"Reminder saved: renew the {doc} on {month} {dom}."]
            qs, answer = ["Which document did you say you'd nudge me about?",
                          "What paperwork is the reminder you set for?"], doc
        elif kind == "movie":
            liked, movie = b.take("movie", MOVIES), b.take("movie", MOVIES)
            req = [f"Movie night tonight, something like '{liked}' please.",
                   f"What should we watch? We loved '{liked}'."]
            said = [f"You should watch '{movie}'; it's the closest thing to '{liked}'.",
                    f"Go for '{movie}', it has the same warmth as '{liked}'."]
            qs, answer = ["Which film did you point me to?", "What did you suggest we watch for movie night?"], movie
        else:  # flight
            city = b.take("city", CITIES)
            code = f"{b.pick(['TP', 'LH', 'BA', 'KL', 'AF', 'UA', 'IB'])}{b.rng.randint(100, 2999)}"
            time, gate = b.pick(TIMES), f"{b.pick('ABCDE')}{b.rng.randint(2, 40)}"
            req = [f"Can you check my flight details for the {city} trip?",
                   f"What time is my flight to {city} again?"]
            said = [f"Your flight {code} to {city} leaves at {time} from gate {gate}.",
                    f"Flight {code} to {city}: departure {time}, gate {gate}."]
            qs, answer = [f"What's the flight number for my {city} trip?",
                          f"Which flight am I on to {city}?"], code
        u = b.say(b.variant(req))
        a = b.say(b.variant(said), evidence=True)
        return [[(u, a)]], [_Q(b.pick(qs), "assistant", (a,), answer)]

    return _Episode(kind, [(0.0, 1.0)], [1], build)


ASSISTANT_KINDS = ("book_rec", "appointment", "recipe", "restaurant", "workout", "gift", "reminder", "movie", "flight")

# --------------------------------------------------------------------------------------------------
# updates: an earlier value superseded later


def _update(b: _Builder, p: dict[str, str], kind: str) -> _Episode:
    tentative = kind in ("city", "job") and b.rng.random() < 0.7
    windows = [(0.0, 0.35), (0.35, 0.62), (0.62, 1.0)] if tentative else [(0.0, 0.45), (0.5, 1.0)]

    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        partner = p["partner"]
        moved = MONTHS[(days[-1] - timedelta(days=12)).month - 1]
        tent: list[str] = []
        if kind == "city":
            c1, c2 = p["city"], b.take("city", CITIES)
            orig = [f"I've lived in {c1} for about six years now.",
                    f"Rent in {c1} keeps going up, but I love my neighbourhood here."]
            tent = [f"We're thinking about moving to {c2} next spring.",
                    f"{partner} and I keep talking about relocating to {c2}."]
            new = [f"We moved to {c2} in {moved} and the boxes are finally unpacked.",
                   f"First weeks of living in {c2} done; the move in {moved} was exhausting."]
            acks = ["Home is where your stuff is, eventually.", "Big life changes, exciting!",
                    "Good to know, thanks for filling me in."]
            qs, answer = ["Where do I live these days?", "Which city is home for me now?"], c2
        elif kind == "job":
            c1, c2 = p["employer"], b.take("company", COMPANIES)
            orig = [f"I've been a {p['job']} at {c1} for three years.",
                    f"Work at {c1} is hectic this quarter, lots of late nights."]
            tent = [f"Got an interview with {c2} next week, fingers crossed.",
                    f"A recruiter from {c2} reached out and I'm tempted."]
            new = [f"I accepted an offer from {c2}; my last day at {c1} is Friday.",
                   f"Started at {c2} this week, leaving {c1} was bittersweet."]
            acks = ["Career moves are a big deal.", "Best of luck with the change!", "Sounds like a busy stretch."]
            qs, answer = ["Who is my current employer?", "Which company am I with nowadays?"], c2
        elif kind == "band":
            b1, b2 = b.take("band", BANDS), b.take("band", BANDS)
            orig = [f"My favourite band is {b1}, I've seen them live twice.",
                    f"Nobody comes close to {b1} for me, favourite band by a mile."]
            new = [f"Honestly I've gone off {b1}; {b2} is my new favourite.",
                   f"{b2} have completely replaced {b1} as my number one band."]
            acks = ["Music taste evolves, that's healthy.", "Ha, a classic shift.", "Good taste either way."]
            qs, answer = ["Which group do I like most at the moment?", "Who is my top musical act these days?"], b2
        elif kind == "sunday":
            sport, hobby = b.take("sport", SPORTS), b.take("hobby", HOBBIES)
            orig = [f"I play {sport} every Sunday morning with some colleagues.",
                    f"Sunday mornings are for {sport} with the work crowd."]
            new = [f"I quit {sport}, my knee couldn't take it, so Sundays are for {hobby} now.",
                   f"No more {sport} for me; I've swapped my Sunday games for {hobby}."]
            acks = ["Listen to your body.", "Weekends need a ritual.", "Sounds like a good rhythm."]
            qs, answer = ["What do I do on Sunday mornings now?", "Which activity fills my Sundays nowadays?"], hobby
        elif kind == "phone":
            p1, p2 = b.take("phone", PHONES), b.take("phone", PHONES)
            orig = [f"My {p1} is three years old and the battery is dying.",
                    f"Still rocking the {p1}, cracked screen and all."]
            new = [f"Switched to a {p2} yesterday and I'm never going back.",
                   f"Said goodbye to the {p1}; the new {p2} is so much faster."]
            acks = ["Tech upgrades are satisfying.", "Phones do age fast.", "Fair enough."]
            qs, answer = ["What handset am I using now?", "Which mobile do I carry these days?"], p2
        elif kind == "diet":
            d1, d2, change = b.pick([("vegetarian", "pescatarian", "started eating fish again"),
                                     ("vegan", "vegetarian", "added eggs and cheese back in"),
                                     ("pescatarian", "vegan", "cut out fish and dairy completely")])
            orig = [f"I've been {d1} for almost ten years.", f"Being {d1} has never felt like a sacrifice to me."]
            new = [f"I've {change}, so I'm {d2} now.", f"Quick update on food: I {change}; call me {d2}."]
            acks = ["Whatever works for you.", "Diets change with life, makes sense.", "Thanks for the heads-up."]
            qs, answer = ["How would you describe the way I eat at this point?", "What are my eating habits now?"], d2
        else:  # race
            city = b.take("city", CITIES)
            orig = ["I'm training for a 10k in the spring.", "My goal this year is a sub-hour 10k."]
            new = [f"Scrap the 10k, I signed up for the {city} marathon instead!",
                   f"Changed plans: I'm doing the full {city} marathon in the autumn."]
            acks = ["Ambitious! Build the mileage slowly.", "Love the ambition.", "Got it."]
            qs, answer = ["What event am I preparing for now?", "What race is on my calendar at the moment?"], \
                f"the {city} marathon"
        parts: list[list[Pair]] = []
        o = b.say(b.variant(orig), evidence=True)
        parts.append([(o, b.ack(acks))])
        related = [("original", o)]
        if tentative:
            t = b.say(b.variant(tent), evidence=True)
            parts.append([(t, b.ack(["Keep me posted!", "Exciting possibility.", "Fingers crossed."]))])
            related.append(("tentative", t))
        n = b.say(b.variant(new), evidence=True)
        parts.append([(n, b.ack(acks))])
        return parts, [_Q(b.pick(qs), "update", (n,), answer, tuple(related))]

    return _Episode(kind, windows, [1] * len(windows), build)


UPDATE_KINDS = ("city", "job", "band", "sunday", "phone", "diet", "race")

# --------------------------------------------------------------------------------------------------
# order: two dated events, which came first


def _order(b: _Builder, p: dict[str, str], kind: str) -> _Episode:
    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        if kind == "trips":
            vals = [b.take("city", CITIES), b.take("city", CITIES)]
            tpl = ["Just got back from {v}, the food was unreal.",
                   "Back home after five days in {v}; my feet are done.",
                   "Home from {v} and already missing it."]
            acks = ["Welcome back! Sounds like a great trip.", "Travel is the best, glad you had fun.",
                    "Ah, post-trip blues are real."]
            qs = ["Which trip came first, {a} or {b}?", "Did I go to {a} or to {b} earlier?"]
        elif kind == "concerts":
            vals = [b.take("band", BANDS), b.take("band", BANDS)]
            tpl = ["Saw {v} live last night and my ears are still ringing.", "The {v} gig yesterday was incredible."]
            acks = ["Live music hits different.", "What a night, lucky you!"]
            qs = ["Which concert was earlier, {a} or {b}?", "Did I see {a} or {b} first?"]
        elif kind == "rooms":
            vals = [b.take("room", ROOMS), b.take("room", ROOMS)]
            tpl = ["We finally finished repainting the {v} this weekend.", "The {v} renovation is done, at last!"]
            acks = ["DIY projects are so satisfying once they're done.", "It must feel like a new place."]
            qs = ["Which did we redo first, the {a} or the {b}?", "Was the {a} or the {b} renovated earlier?"]
        else:  # books finished
            vals = [b.take("book", BOOKS)[0], b.take("book", BOOKS)[0]]
            tpl = ["Just finished reading '{v}', what an ending.", "Closed the last page of '{v}' tonight."]
            acks = ["That feeling when a book ends is bittersweet.", "Another one for the shelf!"]
            qs = ["Which did I finish first, '{a}' or '{b}'?", "Did I complete '{a}' before '{b}'?"]
        parts, ev = [], []
        for v in vals:
            def event(v: str = v) -> str:
                return b.pick(tpl).format(v=v)

            u = b.say(event, evidence=True)
            ev.append(u)
            parts.append([(u, b.ack(acks))])
        a, c = (vals[0], vals[1]) if b.rng.random() < 0.5 else (vals[1], vals[0])
        q = b.pick(qs).format(a=a, b=c)
        return parts, [_Q(q, "order", tuple(ev), vals[0])]

    return _Episode(kind, [(0.0, 0.8), (0.0, 1.0)], [1, 1], build)


ORDER_KINDS = ("trips", "concerts", "rooms", "books_done")

# --------------------------------------------------------------------------------------------------
# multi: one answer spread over 2-3 sessions


def _multi(b: _Builder, p: dict[str, str], kind: str) -> _Episode:
    n = 3 if kind in ("reunion", "allergies") and b.rng.random() < 0.6 else 2

    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        if kind == "cats":
            c1, c2 = b.take("pet", PET_NAMES), b.take("pet", PET_NAMES)
            tpls = [[f"Our cat {c1} knocked a glass off the table again.",
                     f"{c1}, our tabby, has decided the keyboard is her bed."],
                    [f"We brought home a second kitten and named her {c2}.",
                     f"New kitten alert: {c2} joined the household this week."]]
            q, answer = "What are the names of my two cats?", f"{c1} and {c2}"
            acks = ["Cats are chaos agents.", "Ha, classic cat behaviour.", "Aww, how sweet."]
        elif kind == "kids":
            d, s = b.take("person", PEOPLE), b.take("person", PEOPLE)
            tpls = [[f"My daughter {d} lost her first tooth!", f"{d}, my little girl, just learned to ride a bike."],
                    [f"My son {s} scored his first goal at football practice.",
                     f"{s}, our boy, is obsessed with dinosaurs this month."]]
            q, answer = "What are my children called?", f"{d} and {s}"
            acks = ["Such a cute milestone.", "Kids grow up so fast.", "That's adorable."]
        elif kind == "instruments":
            i1, i2 = b.take("instrument", INSTRUMENTS), b.take("instrument", INSTRUMENTS)
            tpls = [[f"I've played the {i1} since secondary school.", f"Dusted off my {i1} for a jam session tonight."],
                    [f"I picked up the {i2} last month, it's harder than it looks.",
                     f"Learning the {i2} now as a second instrument."]]
            q, answer = "Which musical instruments can I play?", f"{i1} and {i2}"
            acks = ["Music keeps the brain young.", "Nice, practice pays off.", "That's a fun combination."]
        elif kind == "languages":
            l1, l2 = b.take("language", LANGUAGES), b.take("language", LANGUAGES)
            tpls = [[f"I grew up speaking {l1} at home with my grandparents."],
                    [f"After two years abroad I'm pretty fluent in {l2} too."]]
            q, answer = "Which languages do I speak?", f"{l1} and {l2}"
            acks = ["Being multilingual is a gift.", "Impressive!", "That must come in handy."]
        elif kind == "allergies":
            vals = [b.take("allergen", ALLERGENS) for _ in range(n)]
            tpls = [[f"Turns out I'm allergic to {vals[0]}; the test came back positive."],
                    [f"Add {vals[1]} to the list of things I react to, apparently."]]
            if n == 3:
                tpls.append([f"The allergist found one more trigger: {vals[2]}."])
            q, answer = "What am I allergic to?", ", ".join(vals)
            acks = ["Good to know, I'll keep that in mind.", "Allergies are such a nuisance.", "Noted, stay safe."]
        else:  # reunion
            vals = [b.take("city", CITIES) for _ in range(n)]
            tpls = [[f"{vals[0]} is on the shortlist for the family reunion."],
                    [f"{p['partner']} suggested {vals[1]} for the reunion too."]]
            if n == 3:
                tpls.append([f"We've added {vals[2]} as a third reunion option."])
            q, answer = "Which places are we considering for the family get-together?", ", ".join(vals)
            acks = ["Lots of good options.", "Planning by committee, fun!", "That's a tough choice."]
        parts, ev = [], []
        for tpl in tpls:
            u = b.say(b.variant(tpl), evidence=True)
            ev.append(u)
            parts.append([(u, b.ack(acks))])
        return parts, [_Q(q, "multi", tuple(ev), answer)]

    return _Episode(kind, [(0.0, 1.0)] * n, [1] * n, build)


MULTI_KINDS = ("cats", "kids", "instruments", "languages", "allergies", "reunion")

# --------------------------------------------------------------------------------------------------
# short: the assistant asks, the user answers in a word or two


def _short(b: _Builder, p: dict[str, str], kind: str) -> _Episode:
    def build(days: list[date]) -> tuple[list[list[Pair]], list[_Q]]:
        if kind == "anniversary_trip":
            v = b.take("city", CITIES)
            setup = ["We finally decided where to go for our anniversary trip.",
                     "The anniversary trip is booked, at long last."]
            ask = ["Oh exciting! So which city did you two pick in the end?", "Lovely! Where are you off to?"]
            q = "Where are we heading for the anniversary getaway?"
        elif kind == "nursery":
            v = b.take("colour", COLOURS)
            setup = ["The painters are coming to do the nursery on Monday.", "Nursery painting happens next week!"]
            ask = ["Which colour did you go with for the nursery walls?", "What shade did you choose for the nursery?"]
            q = "What colour will the baby's room be?"
        elif kind == "quiz":
            v = b.take("quiz", QUIZ_NAMES)
            setup = ["Our pub quiz team finally agreed on a name.", "The quiz team settled the name debate tonight."]
            ask = ["Ha, what did you end up calling yourselves?", "Go on then, what's the team name?"]
            q = "What's our trivia team called?"
        elif kind == "wine":
            v = b.take("wine", WINES)
            setup = ["I'm in charge of the wine for Saturday's dinner party.", "I was told to bring wine on Saturday."]
            ask = ["Nice, which bottle are you bringing?", "What are you thinking of bringing?"]
            q = "What am I bringing to drink at the dinner party?"
        elif kind == "course":
            v = b.take("course", COURSES)
            setup = ["Registration for the evening courses closed today.", "I made the evening-course deadline."]
            ask = ["Did you get in? Which one did you choose?", "Which course did you sign up for?"]
            q = "Which night class am I taking?"
        elif kind == "sofa":
            v = b.take("colour", COLOURS)
            setup = ["The sofa we ordered should arrive next week.", "Finally ordered a new couch."]
            ask = ["Which fabric colour did you end up ordering?", "What colour did you go for?"]
            q = "What colour is our new couch?"
        else:  # baby name
            v = b.take("person", PEOPLE)
            setup = ["We've picked a name for the baby.", "Big decision made tonight: the baby name."]
            ask = ["Oh! Are you sharing it yet? What is it?", "I'm dying to know, what's the name?"]
            q = "What name did we choose for our baby?"
        forms = ["{V}.", "{V}!", "{V}, definitely.", "Went with {v}.", "{V}, in the end.", "Oh, {v}."]
        s = b.say(b.variant(setup))
        a = b.say(b.variant(ask), evidence=True)
        ans = b.say(lambda: b.pick(forms).format(v=v, V=cap(v)), evidence=True)
        ack = b.say(b.variant(["Great pick.", "Love it!", "Perfect choice.", "Ha, brilliant.", "Ooh, nice one."]))
        return [[(s, a), (ans, ack)]], [_Q(q, "short", (a, ans), v)]

    return _Episode(kind, [(0.0, 1.0)], [2], build)


SHORT_KINDS = ("anniversary_trip", "nursery", "quiz", "wine", "course", "sofa", "baby_name")

# --------------------------------------------------------------------------------------------------
# filler


def _filler(b: _Builder, p: dict[str, str]) -> Pair:
    weights = {"pets": 6, "friend": 6, "news": 5, "weather": 5, "tv": 5, "work": 6, "cooking": 5, "sports": 4,
               "concept": 10, "others": 6, "life": 5, "names": 3, "tips": 5, "short": 12,
               "advice": 20}
    if len(b.used.get("concept", [])) == len(CONCEPTS):
        del weights["concept"]
    if len(b.used.get("tip", [])) == len(TIPS):
        del weights["tips"]
    kind = b.rng.choices(list(weights), weights=list(weights.values()))[0]
    person = lambda: b.free("person", PEOPLE)  # noqa: E731 - a fresh name on every retry
    if kind == "pets":
        def u() -> str:
            breed = b.pick(DOG_BREEDS)
            return b.pick([
                f"My {b.pick(['neighbour', 'coworker', 'cousin', 'brother-in-law'])}'s {breed} "
                f"{b.pick(['chewed through a phone charger', 'escaped the garden', 'stole a baguette', 'ate a sock'])}"
                f" again.",
                f"{person()}'s {breed} {b.pick(['barked at the postman for an hour', 'rolled in mud', 'ate a shoe'])} "
                f"today, chaos as usual.",
                f"Saw a {breed} at the park that looked exactly like {b.pick(['a mop', 'a fox', 'a tiny bear'])}.",
            ])
        a = ["Ha, dogs really do have personalities.", "That sounds like a lively dog!",
             "Every dog has a signature crime.", "I'd love to see a photo of that."]
    elif kind == "friend":
        def u() -> str:
            c = b.pick(CITIES)
            return b.pick([f"A friend of mine, {person()}, lives in {c} and says rent there is wild.",
                           f"{person()} keeps sending me photos from {c}; I'm jealous.",
                           f"My cousin is thinking about a job in {c}.",
                           f"{person()} says {c} is overrated, which feels like a hot take."])
        a = ["It does look lovely in pictures.", "Rent is rough in a lot of cities right now.",
             "Moving for work is a big call.", "Everyone has a city they swear by."]
    elif kind == "news":
        def u() -> str:
            co, n = b.pick(COMPANIES), b.pick(NEWS)
            return b.pick([f"Did you see {co} is {n}?", f"Apparently {co} is {n}.",
                           f"Heard a rumour at lunch that {co} is {n}."])
        a = ["I can't check live news, but that would be a big change.", "Interesting, I'd wait for confirmation.",
             "Corporate news moves fast these days.", "Worth keeping an eye on."]
    elif kind == "weather":
        def u() -> str:
            w = b.pick(["grey and drizzly", "freezing", "weirdly warm", "windy", "foggy every morning", "sunny"])
            return b.pick([f"It's been {w} all week here.", f"Ugh, {w} again today.",
                           f"The forecast says {w} for the weekend."])
        a = ["Perfect weather for staying in with a book.", "Hopefully it turns soon!",
             "Weather really sets the mood.", "Make the most of it."]
    elif kind == "tv":
        def u() -> str:
            show = b.pick(TV_SHOWS)
            op = b.pick(["hooked already", "not sure yet", "the first episode was slow", "the soundtrack is great"])
            return b.pick([f"Started watching {show} last night, {op}.", f"Finally caught up on {show}: {op}."])
        a = ["Give it a couple more episodes.", "I've heard good things.", "TV is great comfort."]
    elif kind == "work":
        def u() -> str:
            return b.pick([
                f"{b.pick(['The Monday stand-up', 'Our planning meeting', 'The budget review', 'A client call'])} "
                f"ran over again {b.pick(['today', 'this morning', 'this afternoon'])}.",
                f"Spent the whole {b.pick(['afternoon', 'morning', 'day'])} on "
                f"{b.pick(['spreadsheets', 'a slide deck nobody will read', 'expense reports', 'code review'])}.",
                f"{person()} from the other team asked me to cover {b.pick(['a shift', 'a meeting', 'a demo'])}.",
            ])
        a = ["Meetings expand to fill the time available.", "That sounds draining.", "Hope tomorrow's lighter.",
             "Those days are rough."]
    elif kind == "cooking":
        def u() -> str:
            food = b.pick(FOODS)
            return b.pick([f"Tried making {food} for the first time, "
                           f"{b.pick(['total disaster', 'surprisingly good', 'edible at least'])}.",
                           f"{person()} made {food} for us last night, so good.",
                           f"There's a new place doing {food} near the station."])
        a = ["Cooking is all practice.", "Yum, that sounds great.", "Worth a try for sure.", "Nice!"]
    elif kind == "sports":
        def u() -> str:
            t = b.pick(TEAMS)
            return b.pick([f"{cap(t)} lost {b.rng.randint(0, 3)}-{b.rng.randint(4, 6)} on Saturday, ugh.",
                           f"Did you catch the {t.removeprefix('the ')} game? What a finish.",
                           f"{cap(t)} signed someone new this week."])
        a = ["Sports are an emotional rollercoaster.", "Ha, there's always next season.", "What a game."]
    elif kind == "concept":
        concept, text = b.take("concept", CONCEPTS)
        q = b.say(b.variant([f"Can you explain {concept} in simple terms?", f"Quick question: what is {concept}?",
                             f"What's the deal with {concept}?"]))
        lead = ["Sure.", "Good question.", "In short:", "Happy to.", "Simply put:"]
        return q, b.say(lambda: f"{b.pick(lead)} {text} {b.pick(SHORT_REPLY_TAIL)}")
    elif kind == "others":
        def u() -> str:
            return b.pick([f"My coworker {person()} keeps recommending '{b.pick(BOOKS)[0]}' to everyone.",
                           f"{person()} just got back from {b.pick(CITIES)} and won't stop talking about it.",
                           f"{person()} bought {b.pick(PURCHASES)[0]} and regrets it already.",
                           f"{person()} is learning {b.pick(LANGUAGES)} for a work trip."])
        a = ["Ha, everyone has their phase.", "Sounds like them!", "People love a new obsession.", "Fair enough."]
    elif kind == "life":
        acts = ["laundry", "groceries", "cleaning the fridge", "answering emails", "a long walk", "fixing a bike tyre",
                "meal prep", "a haircut", "returning parcels", "paying bills"]

        def u() -> str:
            x, y = b.rng.sample(acts, 2)
            return b.pick([f"Long day. {cap(x)}, then {y}.", f"Today was mostly {x} and {y}.",
                           f"Weekend plan: {x}, {y}, sleep."])
        a = ["Sometimes the boring days are restful.", "Productive!", "Sounds like a solid plan."]
    elif kind == "names":
        species = b.pick(["dog", "cat", "rabbit", "goldfish", "parrot", "hamster"])
        q = b.say(lambda: b.pick([f"What's a good name for a {species}?",
                                  f"My friend needs a name for their new {species}, any ideas?",
                                  f"Help, {person()} can't decide on a {species} name."]))
        return q, b.say(lambda: "Popular picks are {}, {} and {}.".format(*b.rng.sample(PET_NAMES, 3)))
    elif kind == "tips":
        topic, tip = b.take("tip", TIPS)
        q = b.say(b.variant([f"Any tips for {topic}?", f"How do I get better at {topic}?"]))
        lead = ["A few ideas.", "Here's what usually works.", "Try this.", "Small habits help most."]
        return q, b.say(lambda: f"{b.pick(lead)} {tip} {b.pick(FOLLOWUPS)}")
    elif kind == "advice":
        chosen: list[str] = []

        def make() -> str:
            city, month, name, wd = b.pick(CITIES), b.pick(MONTHS), person(), b.pick(WEEKDAYS)
            options = [
                (f"How should I plan a weekend in {city}?",
                 f"For a weekend in {city}, start with a walking tour of the old centre on Saturday morning, keep the "
                 f"afternoon for a museum or a market, and book dinner somewhere local in advance. On Sunday, head out "
                 f"early before the crowds and leave time for a long lunch before you travel back."),
                (f"What should I pack for a trip to {city} in {month}?",
                 f"For {city} in {month}, pack layers, a light waterproof jacket and shoes you can walk in all day. "
                 f"Check the forecast the day before you leave, bring a power adapter if you need one, and keep some "
                 f"space in the bag for anything you pick up there."),
                (f"Can you draft a quick message to {name} cancelling dinner on {wd}?",
                 f"Here's a draft: \"Hi {name}, I'm really sorry, but I have to cancel dinner on {wd}; something "
                 f"came up that I can't move. Could we find another evening next week? Next one is on me.\" "
                 f"Adjust the tone if you two are more casual."),
                (f"How do I politely turn down {name}'s invitation to a {wd} party?",
                 f"Keep it short and warm: thank {name} for thinking of you, say you already have plans on {wd}, and "
                 f"suggest meeting up another time so it doesn't feel like a brush-off. No need to over-explain; a "
                 f"friendly, clear answer is kinder than a vague maybe."),
                (f"What's a good way to spend a rainy {wd} in {month}?",
                 f"A rainy {wd} in {month} is perfect for a slow morning, a long breakfast and a film you've "
                 f"been meaning to watch. "
                 f"If you want to get out, try a museum, a bookshop café or an indoor pool. Cooking something that "
                 f"simmers for hours also makes the flat feel cosy."),
                (f"I need to write a thank-you note to {name} for hosting us. Any help?",
                 f"Try something like: \"Dear {name}, thank you so much for having us last weekend. The food was "
                 f"wonderful and it was so good to catch up properly. We'd love to return the favour soon.\" Mention "
                 f"one specific moment if you can; it makes the note feel personal."),
            ]
            q, answer = b.pick(options)
            chosen[:] = [answer]
            return q

        user = b.say(make)
        return user, b.say(lambda: chosen[0])
    else:
        def u() -> str:
            return b.pick(SHORT_USER) + b.pick(SHORT_SUFFIX)
        a = [f"{x} {y}".strip() for x in SHORT_REPLY for y in SHORT_REPLY_TAIL]
        return b.say(u), b.say(b.variant(a))
    extra_u, extra_a = FILLER_MORE[kind]
    user = b.say(lambda: u() + (" " + b.pick(extra_u) if b.rng.random() < 0.85 else ""))
    def reply() -> str:
        middle = b.rng.sample(extra_a, 2 if b.rng.random() < 0.75 else 1)
        return " ".join([b.pick(a), *middle, b.pick(SHORT_REPLY_TAIL)])

    return user, b.say(reply)


def _greeting(b: _Builder, day: date) -> Pair:
    wd = day.strftime("%A")
    hello = ["Hey", "Hi", "Morning", "Hello", "Evening", "Hi again", "Hey there", "Me again", f"Happy {wd}"]
    tail = ["", "!", ", I'm back.", ", got a minute?", ", quick check-in.", ", long time no see.", ", back again."]
    user = b.say(lambda: b.pick(hello) + b.pick(tail))
    greet = ["Welcome back!", "Hi!", "Good to see you again.", "Hello!", "Hey!", f"Happy {wd}!", "Hi there!"]
    ask = ["What's on your mind today?", f"How's your {wd} going?", "What can I help with?", "What's new?",
           "What are we working on?", "How have you been?", "What's up?"]
    asst = b.say(lambda: b.pick(greet) + " " + b.pick(ask))
    return user, asst


# --------------------------------------------------------------------------------------------------
# assembly


@dataclass
class Sizes:
    """How much of everything one conversation gets (the defaults give ~250-320 turns)."""

    sessions: tuple[int, int] = (17, 20)
    turns_per_session: tuple[int, int] = (13, 18)
    single: int = 16
    temporal: int = 6
    assistant: int = 7
    update: int = 5
    order: int = 3
    multi: int = 4
    short: int = 4

    @classmethod
    def quick(cls) -> Sizes:
        return cls(sessions=(8, 10), single=8, temporal=3, assistant=4, update=3, order=2, multi=2, short=2)


def _persona(b: _Builder) -> dict[str, str]:
    return {
        "name": b.take("person", PEOPLE),
        "partner": b.take("person", PEOPLE),
        "city": b.take("city", CITIES),
        "employer": b.take("company", COMPANIES),
        "job": b.take("job", JOBS),
    }


def _choose(rng: random.Random, kinds: Sequence[str], n: int, taken: list[str]) -> list[str]:
    """``n`` kinds, none exclusive with an already taken one."""
    out: list[str] = []
    for kind in rng.sample(list(kinds), len(kinds)):
        if len(out) == n:
            break
        clash = any(kind in pair and (set(pair) - {kind}) & set(taken + out) for pair in EXCLUSIVE)
        if not clash:
            out.append(kind)
    return out


def _place(rng: random.Random, episodes: list[_Episode], capacity: list[int]) -> None:
    """Give every part of every episode a session: in order, within its window, within capacity."""
    n = len(capacity)
    dated: list[int] = []
    for ep in sorted(episodes, key=lambda e: -len(e.windows)):
        for _ in range(500):
            chosen: list[int] = []
            prev = -1
            for (lo, hi), size in zip(ep.windows, ep.sizes, strict=True):
                first = max(prev + 1, int(lo * n))
                last = min(n - 1, max(first, int(hi * n) - (1 if hi >= 1.0 else 0)))
                options = [s for s in range(first, last + 1)
                           if capacity[s] >= size and s not in chosen and not (ep.dated and s in dated)]
                if not options:
                    break
                prev = rng.choice(options)
                chosen.append(prev)
            if len(chosen) == len(ep.windows):
                for s, size in zip(chosen, ep.sizes, strict=True):
                    capacity[s] -= size
                ep.sessions = chosen
                if ep.dated:
                    dated.extend(chosen)
                break
        else:
            raise RuntimeError(f"could not place episode {ep.kind!r}: conversation too short")


def _conversation(seed: int, index: int, sizes: Sizes) -> Conversation:
    rng = random.Random(seed * 1_000_003 + index)
    b = _Builder(rng)
    p = _persona(b)
    n_sessions = rng.randint(*sizes.sessions)
    lengths = [rng.randint(*sizes.turns_per_session) for _ in range(n_sessions)]
    starts: list[datetime] = []
    day = START + timedelta(days=rng.randint(0, 4))
    for _ in range(n_sessions):
        starts.append(datetime(day.year, day.month, day.day, rng.randint(7, 21), rng.randint(0, 59), tzinfo=UTC))
        day += timedelta(days=rng.randint(5, 12))

    taken: list[str] = []
    singles = _choose(rng, SINGLE_KINDS, sizes.single, taken)
    dated = [k for k in singles if k in TEMPORAL_KINDS][: sizes.temporal]
    missing = sizes.temporal - len(dated)
    if missing > 0:  # swap plain kinds for dated ones so the temporal count is met
        extra = [k for k in TEMPORAL_KINDS if k not in singles][:missing]
        plain = [k for k in singles if k not in TEMPORAL_KINDS]
        for old, new in zip(plain[::-1], extra, strict=False):
            singles[singles.index(old)] = new
            dated.append(new)
    taken += singles
    multis = _choose(rng, MULTI_KINDS, sizes.multi, taken)
    episodes = [_single(b, p, k, k in dated) for k in singles]
    episodes += [_assistant(b, p, k) for k in rng.sample(ASSISTANT_KINDS, sizes.assistant)]
    updates = ["city", *rng.sample(UPDATE_KINDS[1:], sizes.update - 1)] if sizes.update else []
    episodes += [_update(b, p, k) for k in updates]
    episodes += [_order(b, p, k) for k in rng.sample(ORDER_KINDS, sizes.order)]
    episodes += [_multi(b, p, k) for k in multis]
    episodes += [_short(b, p, k) for k in rng.sample(SHORT_KINDS, sizes.short)]

    greet = [rng.random() < 0.6 for _ in range(n_sessions)]
    capacity = [n - (1 if g else 0) - 3 for n, g in zip(lengths, greet, strict=True)]  # keep >= 3 filler turns
    _place(rng, episodes, capacity)

    # build the planted turns in episode order (dates are known now), then the filler around them
    planted: list[list[list[Pair]]] = [[] for _ in range(n_sessions)]
    questions: list[_Q] = []
    for ep in episodes:
        parts, qs = ep.build([starts[s].date() for s in ep.sessions])
        for s, part in zip(ep.sessions, parts, strict=True):
            planted[s].append(part)
        questions += qs
    sessions: list[Session] = []
    for s in range(n_sessions):
        blocks: list[list[Pair]] = list(planted[s])
        n_filler = lengths[s] - sum(len(x) for x in blocks) - (1 if greet[s] else 0)
        blocks += [[_filler(b, p)] for _ in range(n_filler)]
        rng.shuffle(blocks)
        if greet[s]:
            blocks.insert(0, [_greeting(b, starts[s].date())])
        t = starts[s]
        turns: list[Turn] = []
        for user, asst in (pair for block in blocks for pair in block):
            ut = t
            at = ut + timedelta(seconds=rng.randint(8, 90))
            turns.append(Turn(Message("user", user, ut, s), Message("assistant", asst, at, s)))
            t = at + timedelta(seconds=rng.randint(30, 420))
        sessions.append(Session(s, starts[s], tuple(turns)))

    labelled = tuple(Question(f"c{index}-q{i}", q.text, q.category, q.evidence, q.answer, q.related)
                     for i, q in enumerate(questions))
    persona = f"{p['name']}, {p['job']} at {p['employer']}, lives in {p['city']} with {p['partner']}"
    conv = Conversation(index, persona, tuple(sessions), labelled)
    check(conv)
    return conv


def check(conv: Conversation) -> None:
    """Raise AssertionError unless message texts are unique and every evidence text is exactly one message."""
    texts = [m.text for m in conv.messages()]
    if len(set(texts)) != len(texts):
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        raise AssertionError(f"conversation {conv.index}: duplicate message texts {dupes[:5]}")
    for q in conv.questions:
        for e in (*q.evidence, *(t for _, t in q.related)):
            holders = [t for t in texts if e in t]
            if holders != [e]:
                raise AssertionError(f"{q.id}: evidence {e!r} is in {len(holders)} messages")
    for m in conv.messages():
        if m.timestamp.tzinfo is None:
            raise AssertionError("naive timestamp")
    stamps = [m.timestamp for m in conv.messages()]
    if stamps != sorted(stamps):
        raise AssertionError(f"conversation {conv.index}: timestamps are not increasing")


def generate(seed: int = 0, n_conversations: int = 4, sizes: Sizes | None = None) -> list[Conversation]:
    """``n_conversations`` conversations (each with its own persona), the same for the same seed and sizes."""
    sizes = sizes or Sizes()
    return [_conversation(seed, c, sizes) for c in range(n_conversations)]
