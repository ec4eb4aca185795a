"""English sentences for the corpus generator, written for this project (no standard test lists).

:data:`SENTENCES` holds a few hundred short sentences (about 2-4 s when spoken): a set of
hand-written ones followed by ones built from templates and word lists, all in a fixed
order so that corpora are reproducible. :func:`sentence_split` divides them between the
training (and validation) speech and the test speech, so the test split never repeats a
training sentence.
"""
from __future__ import annotations

__all__ = ["SENTENCES", "HANDWRITTEN", "TEMPLATED", "sentence_split"]

HANDWRITTEN = [
    "Please leave the spare key under the green flower pot.",
    "The morning train to the coast was almost empty today.",
    "My neighbour keeps three noisy geese in her back garden.",
    "We painted the kitchen a pale shade of yellow last spring.",
    "The museum opens at ten and closes early on Sundays.",
    "He forgot his umbrella and walked home in the rain.",
    "A small boat drifted slowly past the old stone bridge.",
    "Could you turn the radio down while I make this call?",
    "The baker sold out of fresh bread before nine o'clock.",
    "Our team finished the project two days ahead of time.",
    "She keeps her grandmother's letters in a wooden box.",
    "The wind pushed the dry leaves across the empty square.",
    "Remember to water the tomatoes every other evening.",
    "Two students argued quietly at the back of the library.",
    "The soup needs a little more salt and some black pepper.",
    "A cold fog rolled in from the harbour after sunset.",
    "Nobody noticed the clock on the wall had stopped.",
    "The children built a tall castle out of cardboard boxes.",
    "I will send you the report as soon as it is ready.",
    "The farmer repaired the fence before the storm arrived.",
    "Heavy snow closed the mountain road for most of the week.",
    "We listened to the owls calling from the dark forest.",
    "The printer on the third floor is out of paper again.",
    "Her bicycle has a bright red basket on the front.",
    "The cat slept all afternoon on the warm window sill.",
    "They moved to a quiet village near the northern lakes.",
    "The doctor asked him to come back in two weeks.",
    "A flock of starlings circled above the football field.",
    "I found an old map folded inside the history book.",
    "The pilot announced a short delay because of the weather.",
    "Fresh oranges are cheaper at the market on Fridays.",
    "The old piano in the hall badly needs tuning.",
    "He collects stamps from countries he has never visited.",
    "The lecture about volcanoes was longer than we expected.",
    "Please close the gate so the dog cannot get out.",
    "The river rose quickly after three days of heavy rain.",
    "A tired waiter carried six plates on one long arm.",
    "We should leave early to avoid the evening traffic.",
    "The new bridge will connect the two halves of the town.",
    "Somebody left a blue scarf on the bench by the bus stop.",
    "My brother learned to swim when he was almost twelve.",
    "The garden smells of lavender after a summer shower.",
    "Each ticket includes a free cup of coffee or tea.",
    "The engineer checked every bolt on the wheel twice.",
    "A loud crash woke the whole street in the middle of the night.",
    "The recipe calls for two eggs and a cup of flour.",
    "They sang old songs around the fire until midnight.",
    "The shop on the corner sells maps, pens and postcards.",
    "Our flight landed smoothly despite the strong crosswind.",
    "He wrapped the glass vase carefully in old newspaper.",
    "The teacher wrote the date neatly on the whiteboard.",
    "Thick clouds hid the top of the hill all morning.",
    "You can borrow my ladder if you bring it back soon.",
    "The goalkeeper dived and caught the ball with one hand.",
    "A gentle breeze carried the smell of the sea inland.",
    "She practised the violin for an hour before dinner.",
    "The lift is broken, so we will have to take the stairs.",
    "Wild strawberries grow along the edge of the path.",
    "The mechanic said the brakes were nearly worn out.",
    "I prefer the quiet carriage at the front of the train.",
    "The kettle whistled just as the phone began to ring.",
    "Bright lanterns lit the narrow streets of the old town.",
    "He counted the coins twice and still came up short.",
    "The committee will vote on the plan next Thursday.",
    "A young fox crossed the lane in front of our car.",
    "Put the heavy boxes at the bottom of the pile.",
    "The sailors tied the ropes tightly before the storm.",
    "My aunt grows pumpkins that are bigger than a chair.",
    "The clerk stamped the form and handed it back to me.",
    "We watched the sunrise from the roof of the hostel.",
    "The orchestra tuned up while the audience found their seats.",
    "A thin layer of ice covered the puddles this morning.",
    "He keeps a spare battery in the drawer by the door.",
    "The climbers reached the summit shortly after noon.",
    "Her laughter echoed down the long empty corridor.",
    "The bus driver waited for the old man to sit down.",
    "Fresh paint was still drying on the front door.",
    "The library has a large collection of poetry books.",
    "We ran out of milk, so I went to the corner shop.",
    "The lighthouse keeper climbed the spiral stairs each night.",
    "The pears in the bowl are not quite ripe yet.",
    "She solved the puzzle faster than anyone in the class.",
    "The parade moved slowly along the main avenue.",
    "A bumble bee buzzed around the open jam jar.",
    "The hotel room had a view of the busy harbour.",
    "He tightened the strings and played a simple tune.",
    "The gardener trimmed the hedge into the shape of a bird.",
    "Do not forget to switch off the lights when you leave.",
    "The campers pitched their tent beside a clear stream.",
    "Grey pigeons gathered on the steps of the town hall.",
    "The chef sliced the onions thinly with a sharp knife.",
    "Our neighbours invited us over for a barbecue on Saturday.",
    "The road winds through pine forests and green valleys.",
    "He checked the weather forecast before going sailing.",
    "The young actor forgot his lines on the opening night.",
    "A heavy parcel arrived for you while you were out.",
    "The students planted twenty trees along the school fence.",
    "The ferry leaves the island every two hours.",
    "She tied a yellow ribbon around the birthday present.",
    "The machine hummed quietly in the corner of the workshop.",
    "The rain stopped just before the wedding began.",
    "Most of the shops in the village close at six.",
    "He read the instructions twice before opening the box.",
    "The candle flickered and went out in the draught.",
    "Thousands of fans cheered when the band walked on stage.",
    "The path to the waterfall is steep and muddy.",
    "I left my glasses on the table next to the sofa.",
    "The baby giggled every time the puppy licked her toes.",
    "The ship's horn sounded three times as it left the port.",
    "A stack of unread magazines sat by the armchair.",
    "The hikers shared a flask of hot chocolate at the top.",
    "We need to buy new curtains for the spare bedroom.",
    "The bell in the tower rings once every hour.",
    "Her handwriting is small, neat and easy to read.",
    "The tractor left deep tracks in the soft field.",
    "The museum guide told us about the ancient coins.",
    "A sudden gust of wind blew my hat into the pond.",
    "They spent the whole weekend repainting the shed.",
    "The soup kitchen serves hot meals every winter evening.",
]

# --- templated sentences: subject + action + place, and a few other frames -----------------------
_PEOPLE = ["my sister", "the old sailor", "our teacher", "the postman", "a tall stranger", "the young nurse",
           "my cousin", "the shop keeper", "a busy farmer", "the night guard", "her uncle", "the new manager",
           "a quiet student", "the taxi driver", "the head chef", "his grandfather"]
_ACTIONS = ["left a note", "waited for an hour", "lost a glove", "found a wallet", "bought some apples",
            "fixed the lamp", "painted a sign", "met an old friend", "dropped the keys", "read the paper",
            "sang a short song", "counted the chairs", "opened the window", "called a taxi", "fed the ducks",
            "planted some seeds"]
_PLACES = ["near the station", "by the river", "at the market", "in the back room", "outside the bakery",
           "behind the church", "on the top floor", "at the bus stop", "in the village hall",
           "beside the old mill", "at the harbour", "in the park", "on the ferry", "at the library",
           "under the bridge", "in the garden"]
_TIMES = ["on Monday", "last night", "early this morning", "after lunch", "before the storm", "at noon",
          "yesterday evening", "on the way home"]

_THINGS = ["the blue kettle", "a wooden chair", "the silver spoon", "an old radio", "the paper lantern",
           "a woollen blanket", "the garden hose", "a glass bottle", "the leather bag", "a copper pan",
           "the kitchen clock", "a pair of boots"]
_STATES = ["is far too heavy to carry alone", "belongs in the cupboard upstairs", "was a gift from my aunt",
           "needs a good clean before Sunday", "has been broken for a week", "looks better in the hall",
           "was cheaper than we expected", "should go back to the shop"]

_WEATHER = ["Strong winds", "Light showers", "Thick fog", "Bright sunshine", "Freezing rain", "Warm air",
            "Heavy clouds", "Gentle snow"]
_REGIONS = ["the northern hills", "the eastern coast", "the city centre", "the western valleys",
            "the southern islands", "the river plains"]
_WHEN = ["by the afternoon", "later tonight", "for most of tomorrow", "through the weekend",
         "early on Tuesday", "until Friday"]

_NUMBERS = ["three", "four", "five", "seven", "eight", "eleven", "twelve", "fifteen", "twenty", "thirty"]
_ITEMS = ["boxes of apples", "sacks of flour", "crates of milk", "bags of sand", "rolls of paper",
          "jars of honey", "bundles of wood", "baskets of eggs"]
_DEST = ["to the school", "to the farm", "across the bridge", "up the hill", "to the harbour",
         "into the barn", "onto the truck", "down to the cellar"]


def _templated() -> list[str]:
    out = []
    # 16 people x 16 actions, each person in 8 of the 16 (place, time) combinations -> 128
    for i, person in enumerate(_PEOPLE):
        for j in range(8):
            act = _ACTIONS[(i * 5 + j * 3) % len(_ACTIONS)]
            place = _PLACES[(i * 3 + j * 7) % len(_PLACES)]
            time = _TIMES[(i + j * 5) % len(_TIMES)]
            out.append(f"{person[0].upper()}{person[1:]} {act} {place} {time}.")
    # 12 things x 8 states -> 96, every other one -> 48
    for i, thing in enumerate(_THINGS):
        for j, state in enumerate(_STATES):
            if (i + j) % 2 == 0:
                out.append(f"{thing[0].upper()}{thing[1:]} {state}.")
    # weather reports: 8 x 6 regions, each with one time -> 48
    for i, w in enumerate(_WEATHER):
        for j, region in enumerate(_REGIONS):
            out.append(f"{w} will reach {region} {_WHEN[(i + 2 * j) % len(_WHEN)]}.")
    # deliveries: 10 numbers x 8 items, one destination each -> 80, every other one -> 40
    for i, n in enumerate(_NUMBERS):
        for j, item in enumerate(_ITEMS):
            if (i + j) % 2 == 1:
                out.append(f"We carried {n} {item} {_DEST[(i * 3 + j) % len(_DEST)]}.")
    # questions -> 32
    for i, person in enumerate(_PEOPLE):
        for j in range(2):
            place = _PLACES[(i * 5 + j * 9 + 2) % len(_PLACES)]
            out.append(f"Did you see {person} {place} {_TIMES[(3 * i + j) % len(_TIMES)]}?")
    return out


TEMPLATED = _templated()

SENTENCES: tuple[str, ...] = tuple(dict.fromkeys(HANDWRITTEN + TEMPLATED))  # de-duplicated, order kept


def sentence_split(test_every: int = 5) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train_sentences, test_sentences)``: every ``test_every``-th sentence goes to the test speech."""
    train = tuple(s for i, s in enumerate(SENTENCES) if i % test_every != test_every - 1)
    test = tuple(s for i, s in enumerate(SENTENCES) if i % test_every == test_every - 1)
    return train, test
