"""The demo's script: the threads seed-demo plays against the services, each a few steps (a
customer's message, an agent's reply, an action such as resolve), with the media Meta would send."""

from __future__ import annotations

from dataclasses import dataclass, field

from helpdesk.dm.models import MessageKind

_CDN = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={}&signature=demo"
_SHOP = "https://demo-brand.example"


def _media(kind: str, asset_id: int, **more) -> dict:
    """An attachment as Meta's webhook gives it, flattened to type and URL (plus size, title...)."""
    return {"type": kind, "url": _CDN.format(asset_id), **more}


# The script -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class In:
    """A customer's message, `at` minutes after the thread starts."""

    at: int
    text: str | None = None
    kind: MessageKind = MessageKind.TEXT
    attachments: tuple[dict, ...] = ()
    extra: dict = field(default_factory=dict)
    quote: int | None = None  # index of an earlier step of the thread, replied to inline
    sender: int = 0  # in a group: which member writes
    brand_reacts: str | None = None
    edited_to: str | None = None
    unsent: bool = False


@dataclass(frozen=True)
class Out:
    """An agent's reply, `at` minutes after the thread starts; delivered, and read if `read`."""

    at: int
    text: str | None = None
    agent: str = "agent@demo.test"
    attachments: tuple[dict, ...] = ()
    quote: int | None = None
    contact_reacts: str | None = None
    reactor: int = 0  # in a group: which member reacts
    read: bool = True


@dataclass(frozen=True)
class Act:
    """A state change at `at` minutes: accept, decline, block, general, vanish, seen, leave,
    purge, resolve, or "priority LEVEL"."""

    at: int
    action: str


Step = In | Out | Act


@dataclass(frozen=True)
class Person:
    username: str
    name: str
    followed: bool = True  # followed by the brand: a known contact, straight to primary
    follows: bool = True


@dataclass(frozen=True)
class Thread:
    people: tuple[Person, ...]
    hours_ago: float
    steps: tuple[Step, ...]
    group: tuple[str, str] | None = None  # (platform thread id, title) for a group thread


def _p(username: str, name: str, followed: bool = True, follows: bool = True) -> tuple[Person]:
    return (Person(username, name, followed, follows),)


# The threads are a script to read: one step a line, as written, not as a formatter would.
# fmt: off
THREADS: tuple[Thread, ...] = (
    Thread(_p("lena.schmidt", "Lena Schmidt"), 78, (
        In(0, "Hi! I ordered the linen shirt in size M on Monday (order #48213) and it still "
              "says 'processing'. Any idea when it ships?"),
        Out(14, "Hi Lena, thanks for your patience! Your order left our warehouse this morning, "
                "tracking: https://track.demo-brand.example/00340434161094042557",
            contact_reacts="❤️"),
        In(20, "Perfect, thank you so much!"),
        In(21, kind=MessageKind.STICKER,
           attachments=(_media("sticker", 369239263222822, sticker_id=369239263222822),)),
        Act(40, "resolve"),
    )),
    Thread(_p("jonas.weber", "Jonas Weber"), 70, (
        In(0, "Hey, do the Trail Runner sneakers fit true to size? I'm usually a 43."),
        Out(9, "Hi Jonas! They run slightly small: most customers who wear a 43 take a 44. "
               "Here's the size chart.",
            attachments=({"type": "image", "url": f"{_SHOP}/media/size-chart-trail-runner.png",
                          "size": 184220},)),
        In(15, "Got it, ordering the 44 then 👍", brand_reacts="👍"),
        Act(30, "resolve"),
    )),
    Thread(_p("amelie.roux", "Amélie Roux"), 64, (
        In(0, kind=MessageKind.IMAGE, attachments=(_media("image", 17912853601234567,
                                                          size=512331),)),
        In(1, "Is the wool coat really this colour? On your site it looks more beige than camel."),
        Out(25, "Hi Amélie! Your photo is accurate, it's a warm camel. The product page photo was "
                "shot in harsh daylight, we'll add a note there.", agent="manager@demo.test"),
        In(31, "Thanks, then it's perfect 😍"),
    )),
    Thread(_p("tom.baker", "Tom Baker"), 50, (
        In(0, "Hi, the zip on my backpack broke after two weeks 😕"),
        In(1, kind=MessageKind.VIDEO, attachments=(_media("video", 17987312205544321,
                                                          size=4831220),)),
        Out(40, "Sorry about that, Tom! That's not normal at all. We'll send you a replacement: "
                "could you confirm your address?", quote=1),
        In(52, "Sure: Baker Street 221b, London NW1 6XE",
           edited_to="Sure: 221B Baker Street, London NW1 6XE"),
        Out(60, "Thanks! The replacement is on its way, you'll get a tracking email today.",
            contact_reacts="🙏"),
        Act(70, "resolve"),
    )),
    Thread(_p("priya.nair", "Priya Nair"), 30, (
        In(0, kind=MessageKind.AUDIO, attachments=(_media("audio", 17862211093377210,
                                                          size=182044),)),
        In(1, "Sorry, voice note 🙈 Basically: can I still change the delivery address on "
              "order #48877?"),
        Out(6, "Hi Priya! Yes, it hasn't shipped yet. Send us the new address and we'll "
               "update it."),
        In(9, "Flat 3, 18 Mill Lane, Manchester M4 1AB"),
        Out(12, "Done ✅ Order #48877 now goes to Mill Lane."),
        Act(20, "resolve"),
    )),
    Thread(_p("marco.bianchi", "Marco Bianchi"), 44, (
        In(0, "Hello, this is for a warranty claim on my rain jacket, here's the store receipt."),
        In(1, kind=MessageKind.FILE, attachments=(_media("file", 17844907716620031,
                                                         name="receipt.pdf", size=88231),)),
        Out(35, "Thanks Marco, we've got it. Our warranty team will get back to you within two "
                "working days.", agent="manager@demo.test"),
        Act(36, "priority low"),
    )),
    Thread(_p("chloe.martin", "Chloé Martin"), 20, (
        In(0, "My order arrived and the dress is gorgeous!!"),
        In(1, kind=MessageKind.GIF, attachments=(
            {"type": "gif", "url": "https://media.giphy.com/media/3o7abKhOpu0NwenH3O/giphy.gif"},
        )),
        Out(11, "Yay, so happy you love it Chloé! 💛 Tag us when you wear it!",
            contact_reacts="😍"),
        Act(20, "resolve"),
    )),
    Thread(_p("sofia.garcia", "Sofía García"), 60, (
        In(0, kind=MessageKind.SHARE, attachments=({
            "type": "share",
            "url": "https://www.instagram.com/p/C8xYz12AbCd/",
            "title": "New in: the Riviera linen set, in sand and olive ☀️",
        },)),
        In(1, "Will this come back in olive in size S?"),
        Out(18, "Hi Sofía! The olive set restocks next Thursday, size S included. Shall we "
                "message you when it's live?"),
        In(22, "Yes please!!"),
        Out(23, "You're on the list 🙌"),
        Act(30, "resolve"),
    )),
    Thread(_p("noah.jensen", "Noah Jensen"), 10, (
        In(0, "Is this restocking before Christmas??", kind=MessageKind.STORY_REPLY, extra={
            "story": {"id": "18034567890123456", "url": _CDN.format(18034567890123456)},
        }),
        Out(7, "Hi Noah! Yes, the puffer vest is back on December 2nd, all sizes."),
    )),
    Thread(_p("hannah.fischer", "Hannah Fischer"), 26, (
        In(0, kind=MessageKind.STORY_MENTION,
           attachments=(_media("story_mention", 18011223344556677),), brand_reacts="🔥"),
        In(1, "Wearing my new scarf today, obsessed 🧣"),
        Out(50, "This looks amazing, thanks for the shoutout Hannah! 💛", contact_reacts="❤️"),
    )),
    Thread(_p("oliver.smith", "Oliver Smith"), 15, (
        In(0, "Is this the same bag as yours or a fake? https://bargain-bags.example/item/88213",
           kind=MessageKind.LINK, attachments=({
               "type": "link",
               "url": "https://bargain-bags.example/item/88213",
               "title": "Leather Tote - 70% off",
           },)),
        Out(12, "Thanks for checking with us, Oliver! That shop isn't one of our retailers and the "
                f"price is a red flag. Our stockists: {_SHOP}/stockists",
            agent="manager@demo.test"),
    )),
    Thread(_p("emma.wilson", "Emma Wilson"), 34, (
        In(0, kind=MessageKind.LOCATION, attachments=({
            "type": "location",
            "title": "Demo Brand Store Kreuzberg",
            "url": "https://maps.google.com/?q=52.4986,13.4033",
            "latitude": 52.4986,
            "longitude": 13.4033,
        },)),
        In(1, "Is this store open on Sundays? I'd like to try on the boots before buying."),
        Out(20, "Hi Emma! Kreuzberg is open on Sundays from 12 to 6 pm, and the boots are in stock "
                "there in every size."),
    )),
    Thread(_p("lucas.moreau", "Lucas Moreau"), 5, (
        In(0, kind=MessageKind.PRODUCT, attachments=({
            "type": "product",
            "id": "7012345678901234",
            "retailer_id": "TR-44-BLK",
            "title": "Trail Runner - Black",
            "url": f"{_SHOP}/products/trail-runner-black",
            "image_url": f"{_SHOP}/media/trail-runner-black.jpg",
        },)),
        In(1, "Do you have this one in a 46?"),
    )),
    Thread(_p("mia.hoffmann", "Mia Hoffmann"), 3, (
        In(0, "Track my order", kind=MessageKind.POSTBACK, extra={
            "postback": {"title": "Track my order", "payload": "TRACK_ORDER"},
        }),
        In(1, "Order #49012"),
        Out(4, "Hi Mia! Order #49012 is out for delivery today 🚚"),
        Act(10, "resolve"),
    )),
    Thread(_p("ethan.clarke", "Ethan Clarke"), 40, (
        In(0, kind=MessageKind.UNSUPPORTED, extra={"unsupported_type": "ig_reel"}),
        In(1, "Oops, that didn't send right: it was your reel with the grey hoodie. What's the "
              "fabric?"),
        Out(15, "Hi Ethan! The grey hoodie is 100% organic cotton, a 380 gsm brushed fleece."),
        Act(25, "resolve"),
    )),
    Thread(_p("isabella.rossi", "Isabella Rossi"), 8, (
        In(0, "Hi! Quick question about returns"),
        In(1, "ugh wrong chat sorry", unsent=True),
        In(3, "Can I return sale items? I bought the knit cardigan in the Black Friday sale."),
        Out(16, "Hi Isabella! Sale items can be returned within 30 days, like full-price ones. "
                f"Start here: {_SHOP}/returns"),
        In(20, "Amazing, thanks!", quote=3),
        Act(30, "resolve"),
    )),
    Thread(_p("david.kowalski", "David Kowalski"), 22, (
        In(0, "Hi, I got a discount code in your newsletter (WELCOME15) but checkout says it's "
              "invalid?"),
        Act(2, "priority high"),
    )),
    Thread(_p("sarah.oconnor", "Sarah O'Connor"), 44, (
        In(0, "Hello, do you ship to Ireland? And how much is it?"),
        Out(30 * 60, "Hi Sarah, sorry for the slow reply! Yes, we ship to Ireland: €6.95, free "
                     "over €80, usually 3 to 5 working days.", agent="manager@demo.test"),
    )),
    Thread(_p("felix.braun", "Felix Braun"), 90, (
        In(0, "Hi there, I run a small concept store in Hamburg. Do you do wholesale?"),
        Out(120, "Hi Felix, thanks for reaching out! Please send your store details to "
                 "wholesale@demo-brand.example and our team will share the line sheet.",
            agent="manager@demo.test"),
        In(130, "Will do, thanks!"),
        Act(131, "general"),
    )),
    Thread(_p("julia.novak", "Julia Novak"), 52, (
        In(0, "Hi! I'm a fashion creator (42k followers) and would love to collaborate on your "
              "spring collection 🌸"),
        Act(5, "general"),
    )),
    Thread(_p("ben.carter", "Ben Carter"), 85, (
        In(0, "Just wanted to say the customer service last week was brilliant. Thanks Sam!"),
        Out(30, "That's so kind, Ben, thank you! I'll pass it on to the team 🙏",
            contact_reacts="👍"),
        Act(31, "general"),
    )),
    Thread(_p("grace.lee", "Grace Lee"), 2, (
        In(0, "Hey, can I send you a photo of my receipt here? Switching to vanish mode"),
        Act(1, "vanish"),
        In(2, kind=MessageKind.IMAGE, attachments=(_media("image", 17920011223344556,
                                                          size=301877),)),
        Act(3, "seen"),
        Act(4, "leave"),
        Act(5, "purge"),
        In(6, "Did you get it? It's for order #49150"),
    )),
    # Contacts the brand does not follow: message requests.
    Thread(_p("anna.kuznetsova", "Anna Kuznetsova", followed=False), 6, (
        In(0, "Hi, do you have the Riviera linen set in XL? I can't find it on the website"),
    )),
    Thread(_p("leo.martins", "Leo Martins", followed=False, follows=False), 1, (
        In(0, "Hello! Is there a student discount?"),
    )),
    Thread(_p("crypto.rewards.official", "Crypto Rewards", followed=False, follows=False), 12, (
        In(0, "🚀 Congratulations! You've been selected for our exclusive crypto giveaway. "
              "Claim your 2 BTC now: https://bit.ly/claim-btc-now"),
    )),
    Thread(_p("promo.pages.hub", "Promo Pages", followed=False, follows=False), 48, (
        In(0, "We can feature your brand on our page with 2M followers for only $49! DM us"),
        Act(60, "decline"),
    )),
    Thread(_p("fast.followers.shop", "Fast Followers", followed=False, follows=False), 36, (
        In(0, "Buy real followers 💯 10k for $9.99, DM now!!"),
        Act(20, "block"),
        In(40, "why did u block me??"),
    )),
    Thread(_p("maria.santos", "Maria Santos", followed=False), 28, (
        In(0, "Hi, my order #48790 arrived with the belt missing and the box was open 😞"),
        Act(45, "accept"),
        Act(46, "priority high"),
        Out(47, "Hi Maria, we're really sorry! We've sent the belt separately today, free of "
                "charge."),
        In(60, "Thank you, that's great service"),
    )),
    Thread(_p("kevin.osei", "Kevin Osei", followed=False), 16, (
        In(0, "Hi, are your jeans made in Europe?"),
        Out(25, "Hi Kevin! Yes, all our denim is made in Portugal."),
        Act(30, "resolve"),
    )),
    Thread(
        (
            Person("sophie.turner_", "Sophie Turner"),
            Person("lily.evans", "Lily Evans"),
            Person("zoe.walker", "Zoe Walker", followed=False),
            Person("ava.brown", "Ava Brown", followed=False),
            Person("ruby.hall", "Ruby Hall"),
        ),
        18,
        (
            In(0, "Hi! We're five bridesmaids and want to order the Aurora slip dress in sage for "
                  "a wedding on the 14th", sender=0),
            In(2, "Sizes XS, S, S, M and L 🙏", sender=1),
            In(3, "Can they arrive by the 10th?", sender=2),
            Act(4, "priority urgent"),
            Out(20, "Hi everyone, and congrats to the bride! 🎉 All five sizes are in stock, and "
                    "with express shipping they arrive within two working days.",
                agent="manager@demo.test"),
            In(24, "Amazing!! Ordering now", sender=3, brand_reacts="🎉"),
            In(30, "Can we do one order with five addresses?", sender=4),
            Out(38, "One order has one address, but if you place five orders we'll cover the "
                    "express shipping on all of them 💐", agent="manager@demo.test",
                contact_reacts="❤️", reactor=4),
        ),
        group=("340282366841710300949128137443944319108", "Bridesmaids 💐"),
    ),
)
# fmt: on
