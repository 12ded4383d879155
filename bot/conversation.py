"""The channel-neutral conversation core: inbound chat events in, replies with options out."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.places import Map, Place
from broadcasts import areas, documents, inbox, library, sms, subscribers, vessels
from db.engine import insert_for
from db.models import (
    Area,
    AreaKind,
    Bulletin,
    ChatAddress,
    Document,
    InboxKind,
    Priority,
    ProcessedUpdate,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    Topic,
)
from db.text import fold, nfc

if TYPE_CHECKING:
    from bot.listening import DocumentVoices

log = logging.getLogger(__name__)

PAGE_SIZE = 8
MAX_INPUT = 2000  # characters of one message we keep; the rest is cut (and the person told)
FLOOD_WINDOW_S = 10.0
FLOOD_MAX_EVENTS = 30  # a person toggling topics taps fast; a script taps faster
SEARCH_RESULTS = 3  # documents shown for a search: each gets a read and a listen button
TOPIC_PAGE = 5  # documents listed per page when browsing a topic
SMS_CHOICES = 4  # communes offered by SMS for an ambiguous name (a reply of two SMS at most)
SMS_BRIEF = 200  # characters of a bulletin's body in the answer to TIN by SMS
# Characters of a reading page's message kept for its header, the page-turn hint and (on
# Zalo) the numbered options, so page + extras stay under the platform's limit.
READ_RESERVE = 300


class EventKind(enum.StrEnum):
    text = "text"  # a typed message (commands included: "/start c11914")
    button = "button"  # a button press (Telegram callback) carrying `data`
    photo = "photo"  # a photo, maybe with a caption
    location = "location"  # a shared location
    sticker = "sticker"  # a sticker
    voice = "voice"  # a voice note or audio
    other = "other"  # anything else (files, contacts, polls ...)


@dataclass(frozen=True)
class Inbound:
    """One event from a person in a chat, as every platform adapter describes it."""

    bot_id: int
    chat_id: str
    kind: EventKind
    update_key: str  # platform update id: redeliveries of the same update are handled once
    text: str = ""
    data: str = ""
    display_name: str | None = None
    is_group: bool = False
    file_ref: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    # Characters in one message on the platform (Telegram 4096, Zalo 2000): documents are
    # paged to fit. The default is the smaller of the two.
    text_limit: int = 2000
    # The platform takes audio only as a link it fetches (Zalo), so a voice needs
    # PUBLIC_BASE_URL; otherwise it is uploaded (Telegram).
    voice_by_url: bool = False
    # A text message to an SMS brandname from a phone: words instead of buttons, short
    # unaccented replies (each costs money), no menus (see Conversation._sms_text).
    sms: bool = False


@dataclass(frozen=True)
class Option:
    label: str
    data: str


@dataclass(frozen=True)
class Reply:
    """A message to send back. `replace`: edit the message whose button was pressed.

    `notice`: a short answer to the button tap itself (a toast on Telegram).
    `keep_buttons`: leave the pressed message's buttons in place (a list of search results
    stays usable after one of them is read).
    `audio_document`: after sending this, the adapter renders that document's voice (in
    the background, see bot.listening) and sends it.
    """

    text: str
    options: tuple[Option, ...] = ()
    columns: int = 1
    replace: bool = False
    notice: bool = False
    keep_buttons: bool = False
    audio_document: int | None = None


@dataclass
class _Turn:
    """What one event works with: its session, person, dialog state and clock."""

    session: AsyncSession
    address: ChatAddress
    subscriber: Subscriber
    dialog: dict[str, Any]
    now: dt.datetime
    display_name: str | None
    text_limit: int = 2000
    voice_by_url: bool = False
    sms: bool = False
    # The person was created by this turn and follows nothing (cleared when they follow
    # an area: see Conversation._follow), so their areas need not be read.
    is_new: bool = False
    replies: list[Reply] = field(default_factory=list)
    # The active topics, read once per turn (the same transaction sees the same rows).
    topics: list[Topic] | None = None

    def say(self, text: str, options: list[Option] | tuple[Option, ...] = (), **kw: Any) -> None:
        self.replies.append(Reply(text=text, options=tuple(options), **kw))


def ack_option(bulletin_id: int) -> Option:
    """The "Đã nhận" button senders attach to urgent bulletins."""
    return Option(texts.ACK_BUTTON, f"ack:{bulletin_id}")


# Stores a turn's replies within the turn's transaction (see Conversation.handle).
Keep = Callable[[AsyncSession, list[Reply]], Awaitable[None]]


class FloodGate:
    """Per-chat limit on events, so one person flooding the bot cannot crowd out others."""

    def __init__(self, window_s: float = FLOOD_WINDOW_S, max_events: int = FLOOD_MAX_EVENTS):
        self._window = window_s
        self._max = max_events
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, key: str, now: float) -> tuple[bool, bool]:
        """(admitted, first_refusal): warn once when a chat goes over, then stay quiet."""
        events = self._seen[key]
        while events and now - events[0] > self._window:
            events.popleft()
        events.append(now)
        if len(events) <= self._max:
            return True, False
        return False, len(events) == self._max + 1


class Conversation:
    """Owns every chat flow; one committed transaction per inbound event."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        flood: FloodGate | None = None,
        voices: DocumentVoices | None = None,
    ) -> None:
        self._sessions = sessions
        # Documents read aloud on request; the adapters render and send them after the
        # reply, outside this class's per-chat lock. None: listening is off.
        self.voices = voices
        self._clock = clock
        self._flood = flood or FloodGate()
        self._map = Map()  # provinces and communes (bot.places: why they can be kept)
        # One event at a time per chat, so dialog state never races; chats run in parallel.
        self._locks: dict[tuple[int, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, event: Inbound, keep: Keep | None = None) -> list[Reply]:
        """The replies for one event; [] when it is a redelivery or the chat is flooding.

        `keep(session, replies)` runs inside the turn's transaction when there is
        something to answer (bot.answers stores the answer there, so it commits or rolls
        back with the turn). The answers to a group and to a flooding chat are not turns
        and are not kept.

        Raises on database errors: the adapter logs them and apologises, and since the
        transaction rolled back, a redelivery of the same update is handled afresh.
        """
        if event.is_group:
            return [Reply(texts.GROUP_REPLY.format(handle=""))]
        admitted, warn = self._flood.admit(f"{event.bot_id}:{event.chat_id}", time.monotonic())
        if not admitted:
            return [Reply(texts.TOO_FAST)] if warn else []
        async with self._locks[(event.bot_id, event.chat_id)]:
            return await self._handle(event, keep)

    async def _handle(self, event: Inbound, keep: Keep | None) -> list[Reply]:
        now = self._clock()
        async with self._sessions.begin() as session:
            if not await self._first_time(session, event, now):
                return []
            contact = await subscribers.contact_for(
                session,
                bot_id=event.bot_id,
                chat_id=event.chat_id,
                display_name=event.display_name,
                now=now,
            )
            turn = _Turn(
                session=session,
                address=contact.address,
                subscriber=contact.subscriber,
                dialog=dict(contact.address.dialog or {}),
                now=now,
                display_name=event.display_name,
                text_limit=event.text_limit,
                voice_by_url=event.voice_by_url,
                sms=event.sms,
                is_new=contact.is_new,
            )
            # Without autoflush, the address's new last_seen_at (contact_for) and the
            # person's changes are written once, with the dialog at the end, not in an
            # extra UPDATE before the turn's first read. That read nothing stale: a turn
            # reads areas, subscriptions, topics, bulletins and documents, which the
            # broadcasts modules write at once (a flush or a statement), never the
            # pending rows; erasing flushes them first (see _confirmed).
            with session.no_autoflush:
                await self._dispatch(turn, event)
            # Remember the options last offered, so "2" typed on Zalo means the second one.
            offered = [r for r in turn.replies if r.options]
            if offered:
                turn.dialog["options"] = [o.data for o in offered[-1].options]
            if turn.dialog.get("step") != "phone_consent":
                # A number given without consent is kept only while the question is open.
                turn.dialog.pop("phone", None)
            if turn.subscriber.status is not SubscriberStatus.erased:  # /xoa blanked it
                turn.address.dialog = turn.dialog
            if keep is not None and turn.replies:
                await keep(session, turn.replies)
            return turn.replies

    async def _first_time(self, session: AsyncSession, event: Inbound, now: dt.datetime) -> bool:
        """Mark the update processed; False when it already was (a redelivery)."""
        # One statement: a savepoint around a plain INSERT (to survive its IntegrityError)
        # cost three on every turn. A concurrent turn of the same update waits on the key,
        # then inserts nothing (it committed) or inserts (it rolled back), as before.
        insert = insert_for(session)
        marked = await session.scalar(
            insert(ProcessedUpdate)
            .values(bot_id=event.bot_id, update_key=event.update_key[:80], received_at=now)
            .on_conflict_do_nothing(index_elements=["bot_id", "update_key"])
            .returning(ProcessedUpdate.bot_id)
        )
        return marked is not None

    # --- routing -------------------------------------------------------------------------

    async def _dispatch(self, turn: _Turn, event: Inbound) -> None:
        if turn.dialog.get("step") == "phone_consent" and not _answers_phone(event):
            # Anything else than an answer drops the question, and the number given
            # without consent with it (see _handle).
            turn.dialog = {}
        if event.kind is EventKind.button:
            await self._on_button(turn, event.data)
            return
        if event.kind is EventKind.text:
            await self._on_text(turn, event.text)
            return
        if event.kind is EventKind.photo:
            area = await self._home_area(turn)
            await inbox.save(
                turn.session, now=turn.now, subscriber_id=turn.subscriber.id,
                chat_address_id=turn.address.id, area_id=area.id if area else None,
                kind=InboxKind.photo, text=event.text[:MAX_INPUT], attachment_ref=event.file_ref,
            )  # fmt: skip
            turn.say(texts.PHOTO_FORWARDED.format(area=self._area_name(area)))
            return
        if event.kind is EventKind.location:
            area = await self._home_area(turn)
            await inbox.save(
                turn.session, now=turn.now, subscriber_id=turn.subscriber.id,
                chat_address_id=turn.address.id, area_id=area.id if area else None,
                kind=InboxKind.location, latitude=event.latitude, longitude=event.longitude,
            )  # fmt: skip
            turn.say(texts.LOCATION_FORWARDED.format(area=self._area_name(area)))
            return
        if event.kind is EventKind.sticker:
            turn.say(texts.STICKER_REPLY)
        elif event.kind is EventKind.voice:
            turn.say(texts.VOICE_REPLY)
        else:
            turn.say(texts.UNSUPPORTED_REPLY)

    async def _on_text(self, turn: _Turn, raw: str) -> None:
        text = nfc(raw.strip())
        cut = len(text) > MAX_INPUT
        text = text[:MAX_INPUT]
        if turn.sms:
            await self._sms_text(turn, text)
            return
        if text.startswith("/"):
            word, _, rest = text[1:].partition(" ")
            command = word.split("@", 1)[0].lower()  # "/start@HaiDangBot" in groups
            # An unknown command gets the help, not the officials' inbox.
            await self._command(turn, command if command in texts.COMMANDS else "trogiup", rest)
            return
        folded = fold(text).strip(" .!?")
        if turn.dialog.get("step") == "read" and folded in texts.READ_NEXT_WORDS:
            await self._turn_page(turn, 1)
            return
        if turn.dialog.get("step") == "read" and folded in texts.READ_PREVIOUS_WORDS:
            await self._turn_page(turn, -1)
            return
        wanted = self._search_words(text)
        if wanted is not None:
            await self._command(turn, "tracuu", wanted)
            return
        if folded in texts.PHONE_REMOVE_WORDS:
            await self._command(turn, "sdt", "xoa")
            return
        keyword = texts.KEYWORDS.get(folded)
        if keyword == "ack":
            await self._ack_latest(turn)
            return
        if keyword is not None:
            await self._command(turn, keyword, "")
            return
        options = turn.dialog.get("options") or []
        if text.isdigit() and options and 1 <= int(text) <= len(options):
            await self._on_button(turn, options[int(text) - 1])
            return
        step = turn.dialog.get("step")
        if step == "province":
            await self._typed_province(turn, text)
        elif step == "commune":
            await self._typed_commune(turn, text)
        elif step == "role":
            await self._typed_role(turn, text)
        elif step == "phone":
            await self._typed_phone(turn, text)
        elif step == "phone_consent" and folded in texts.PHONE_YES_WORDS | texts.PHONE_NO_WORDS:
            await self._phone_consent(turn, folded in texts.PHONE_YES_WORDS)
        elif step == "topics" and fold(text) in {"xong", "ok", "done"}:
            await self._on_button(turn, "t:done")
        elif (
            not inbox.is_urgent(text)  # a distress call always reaches the officials
            and library.looks_like_search(text)
            and await self._search(turn, text, question=text)
        ):
            return
        else:
            await self._to_inbox(turn, text, cut)

    async def _command(self, turn: _Turn, command: str, argument: str) -> None:
        turn.dialog = {}
        if command == "start":
            await self._start(turn, argument)
        elif command == "caidat":
            await self._settings_menu(turn)
        elif command == "huy":
            if not await self._is_subscribed(turn):
                turn.say(texts.NOT_SUBSCRIBED)
                return
            turn.dialog = {"step": "confirm", "action": "huy"}
            turn.say(texts.CONFIRM_STOP, self._yes_no(), columns=2)
        elif command == "batdau":
            await self._resume(turn)
        elif command == "xoa":
            turn.dialog = {"step": "confirm", "action": "xoa"}
            turn.say(texts.CONFIRM_ERASE, self._yes_no(), columns=2)
        elif command == "tin":
            await self._latest(turn)
        elif command == "sdt":
            await self._phone(turn, argument.strip())
        elif command == "tracuu":
            if argument.strip():
                await self._search(turn, argument.strip())
            else:
                await self._topics(turn)
        else:
            turn.say(texts.HELP)

    async def _on_button(self, turn: _Turn, data: str) -> None:
        kind, _, value = data.partition(":")
        step = turn.dialog.get("step")
        if kind == "ack":
            await self._ack(turn, int(value) if value.isdigit() else 0)
        elif kind == "consent":
            await self._consent(turn, value == "yes")
        elif kind == "phone":
            await self._phone_consent(turn, value == "yes")
        elif kind == "pg" and value.lstrip("-").isdigit():
            turn.dialog["page"] = max(0, int(value))
            if step == "commune":
                await self._ask_commune(turn, replace=True)
            else:
                await self._ask_province(turn, replace=True)
        elif kind == "p":
            await self._pick_province(turn, value)
        elif kind == "c":
            await self._pick_commune(turn, value)
        elif kind == "r" and value in SubscriberRole.__members__:
            await self._pick_role(turn, SubscriberRole(value))
        elif kind == "t":
            await self._toggle_topic(turn, value)
        elif kind == "s":
            await self._settings_choice(turn, value)
        elif kind == "rm":
            await self._remove_commune(turn, value)
        elif kind == "l" and value in texts.LANGUAGES:
            turn.subscriber.language = value
            turn.dialog = {}
            turn.say(texts.SAVED)
        elif kind == "yes" and step == "confirm":
            await self._confirmed(turn, str(turn.dialog.get("action")))
        elif kind in {"no", "done"}:
            turn.dialog = {}
            turn.say(texts.CANCELLED if kind == "no" else texts.SAVED)
        elif kind in {"rd", "rp"}:  # open a document / turn its page
            document, _, page = value.partition(":")
            if document.isdigit():
                number = int(page) if page.isdigit() else 0
                await self._read(turn, int(document), number, turning=kind == "rp")
        elif kind == "ls" and value.isdigit():
            await self._listen(turn, int(value))
        elif kind == "tp":
            slug, _, page = value.partition(":")
            if slug:
                await self._topic(turn, slug, int(page) if page.isdigit() else 0)
            else:
                await self._topics(turn, replace=True)
        elif kind == "ask":
            question = str(turn.dialog.pop("question", ""))
            await self._to_inbox(turn, question, cut=False)
        else:  # a stale button from an older message
            turn.say(texts.HELP)

    # --- sign-up ----------------------------------------------------------------------

    async def _start(self, turn: _Turn, argument: str) -> None:
        payload = argument.strip()
        if payload:
            await self._deep_link(turn, payload)
            return
        followed = await self._communes(turn)
        if followed and turn.subscriber.consent_at is not None:
            await subscribers.resume(turn.session, turn.subscriber)
            turn.say(texts.WELCOME_BACK.format(areas=self._names(followed)))
            return
        turn.dialog = {"step": "consent"}
        turn.say(texts.WELCOME)
        self._ask_consent(turn)

    @staticmethod
    def _ask_consent(turn: _Turn) -> None:
        turn.say(
            texts.CONSENT,
            [Option(texts.CONSENT_YES, "consent:yes"), Option(texts.CONSENT_NO, "consent:no")],
            columns=2,
        )

    async def _deep_link(self, turn: _Turn, payload: str) -> None:
        area = await self._map.find(turn.session, payload)
        if area is None or area.kind not in (AreaKind.province, AreaKind.commune):
            turn.say(texts.BAD_DEEP_LINK.format(code=payload[:20]))
            await self._start(turn, "")
            return
        if area.kind is AreaKind.province:
            if turn.subscriber.consent_at is None:
                turn.dialog = {"step": "consent", "province": area.id}
                turn.say(texts.WELCOME)
                self._ask_consent(turn)
                return
            turn.dialog = {"step": "commune", "province": area.id, "page": 0, "mode": "signup"}
            await self._ask_commune(turn)
            return
        # A QR poster at the port: subscribe at once, default role, every topic.
        await subscribers.record_consent(turn.session, turn.subscriber, turn.now, turn.display_name)
        # A person created by this turn has chosen no topics either.
        chose = not turn.is_new and bool(
            await subscribers.topic_ids_of(turn.session, turn.subscriber.id)
        )
        await self._follow(turn, area.id)
        if not chose:
            await subscribers.follow_all_topics(turn.session, turn.subscriber.id)
        province = await self._map.get(turn.session, area.province_id) if area.province_id else None
        turn.say(
            texts.DEEP_LINK_DONE.format(commune=area.name, province=self._area_name(province)),
            [
                Option(texts.ADJUST, "s:menu"),
                Option(texts.ADD_COMMUNE, "s:add"),
                Option(texts.ALL_GOOD, "done"),
            ],
        )

    async def _consent(self, turn: _Turn, agreed: bool) -> None:
        if not agreed:
            turn.dialog = {}
            turn.say(texts.CONSENT_DECLINED)
            return
        await subscribers.record_consent(turn.session, turn.subscriber, turn.now, turn.display_name)
        province = turn.dialog.get("province")  # set by a /start p<code> poster link
        if province is not None:
            turn.dialog = {"step": "commune", "province": province, "page": 0, "mode": "signup"}
            await self._ask_commune(turn)
            return
        turn.dialog = {"step": "province", "page": 0, "mode": "signup"}
        await self._ask_province(turn)

    def _page(
        self, items: list[Option], page: int, *, extra: tuple[Option, ...] = ()
    ) -> list[Option]:
        pages = max(1, -(-len(items) // PAGE_SIZE))
        page = min(page, pages - 1)
        shown = items[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        if page > 0:
            shown.append(Option(texts.PREVIOUS, f"pg:{page - 1}"))
        if page < pages - 1:
            shown.append(Option(texts.NEXT, f"pg:{page + 1}"))
        return [*shown, *extra]

    async def _ask_province(self, turn: _Turn, *, replace: bool = False) -> None:
        turn.dialog["step"] = "province"
        provinces = await self._map.provinces(turn.session)
        options = [Option(p.name, f"p:{p.code[1:]}") for p in provinces]
        page = int(turn.dialog.get("page", 0))
        turn.say(texts.ASK_PROVINCE, self._page(options, page), columns=2, replace=replace)

    async def _typed_province(self, turn: _Turn, text: str) -> None:
        matches = await areas.search(turn.session, text, kinds=(AreaKind.province,), limit=8)
        if len(matches) == 1 or (matches and fold(matches[0].area.name).endswith(fold(text))):
            await self._pick_province(turn, matches[0].area.code[1:])
            return
        if matches:
            options = [Option(m.area.name, f"p:{m.area.code[1:]}") for m in matches]
            turn.say(texts.PICK_FROM_MATCHES, options, columns=2)
            return
        # People often type their commune straight away ("cat hai"): offer those.
        communes = await areas.search(turn.session, text, kinds=(AreaKind.commune,), limit=8)
        await self._offer_communes(turn, communes, text)

    async def _offer_communes(self, turn: _Turn, matches: list[areas.AreaMatch], text: str) -> None:
        """One match is taken at once; several are offered with their provinces."""
        if len(matches) == 1:
            await self._pick_commune(turn, matches[0].area.code)
        elif matches:
            options = [Option(m.label, f"c:{m.area.code}") for m in matches]
            turn.say(texts.PICK_FROM_MATCHES, options)
        else:
            turn.say(texts.NOTHING_FOUND.format(text=text[:60]))

    async def _pick_province(self, turn: _Turn, code: str) -> None:
        province = await self._map.find(turn.session, f"p{code}")
        if province is None:
            await self._ask_province(turn)
            return
        turn.dialog.update(step="commune", province=province.id, page=0)
        await self._ask_commune(turn)

    async def _ask_commune(self, turn: _Turn, *, replace: bool = False) -> None:
        province = await self._map.get(turn.session, int(turn.dialog["province"]))
        if province is None:
            await self._ask_province(turn)
            return
        turn.dialog["step"] = "commune"
        communes = await self._map.communes(turn.session, province.id)
        options = [Option(c.name, f"c:{c.code}") for c in communes]
        page = int(turn.dialog.get("page", 0))
        back = (Option(texts.OTHER_PROVINCE, "s:province"),)
        turn.say(
            texts.ASK_COMMUNE.format(province=province.name),
            self._page(options, page, extra=back),
            columns=2,
            replace=replace,
        )

    async def _typed_commune(self, turn: _Turn, text: str) -> None:
        province_id = turn.dialog.get("province")
        matches = await areas.search(
            turn.session, text, kinds=(AreaKind.commune,), province_id=province_id, limit=8
        )
        if not matches:  # maybe the person is in another province than they picked
            matches = await areas.search(turn.session, text, kinds=(AreaKind.commune,), limit=8)
        await self._offer_communes(turn, matches, text)

    async def _pick_commune(self, turn: _Turn, code: str) -> None:
        commune = await self._map.find(turn.session, code)
        if commune is None:
            turn.say(texts.NOTHING_FOUND.format(text=code[:20]))
            return
        added = await self._follow(turn, commune.id)
        if turn.dialog.get("mode") == "settings":
            label = await self._label(turn, commune)
            turn.dialog = {}
            turn.say((texts.ADDED_COMMUNE if added else texts.ALREADY_FOLLOWING).format(area=label))
            await self._settings_menu(turn)
            return
        turn.dialog.update(step="role")
        await self._ask_role(turn)

    async def _ask_role(self, turn: _Turn) -> None:
        turn.dialog["step"] = "role"
        options = [Option(name, f"r:{role.value}") for role, name in texts.ROLE_NAMES.items()]
        turn.say(texts.ASK_ROLE, options, columns=2)

    async def _typed_role(self, turn: _Turn, text: str) -> None:
        wanted = fold(text)
        for role, name in texts.ROLE_NAMES.items():
            if wanted and (wanted in fold(name) or fold(name) in wanted):
                await self._pick_role(turn, role)
                return
        await self._ask_role(turn)

    async def _pick_role(self, turn: _Turn, role: SubscriberRole) -> None:
        turn.subscriber.role = role
        if turn.dialog.get("mode") == "settings":
            turn.dialog = {}
            turn.say(texts.SAVED)
            return
        chosen = await subscribers.topic_ids_of(turn.session, turn.subscriber.id)
        if not chosen:
            chosen = {t.id for t in await self._topics_of(turn)}
        turn.dialog.update(step="topics", topics=sorted(chosen))
        await self._ask_topics(turn)

    async def _ask_topics(self, turn: _Turn, *, replace: bool = False) -> None:
        chosen = set(turn.dialog.get("topics", []))
        options = [
            Option(("✅ " if t.id in chosen else "⬜ ") + t.name, f"t:{t.id}")
            for t in await self._topics_of(turn)
        ]
        options.append(Option(texts.TOPICS_DONE, "t:done"))
        turn.say(texts.ASK_TOPICS, options, replace=replace)

    async def _toggle_topic(self, turn: _Turn, value: str) -> None:
        if turn.dialog.get("step") != "topics":
            turn.dialog = {"step": "topics", "mode": "settings"}
            turn.dialog["topics"] = sorted(
                await subscribers.topic_ids_of(turn.session, turn.subscriber.id)
            )
        chosen = set(turn.dialog.get("topics", []))
        if value == "done":
            if not chosen:
                turn.say(texts.NEED_ONE_TOPIC)
                await self._ask_topics(turn)
                return
            await subscribers.set_topics(turn.session, turn.subscriber.id, chosen)
            mode = turn.dialog.get("mode")
            turn.dialog = {}
            if mode == "settings":
                turn.say(texts.SAVED)
            else:
                await self._summary(turn, chosen)
            return
        if value.isdigit():
            chosen ^= {int(value)}
        turn.dialog["topics"] = sorted(chosen)
        await self._ask_topics(turn, replace=True)

    async def _summary(self, turn: _Turn, topic_ids: set[int]) -> None:
        """`topic_ids`: the person's topics, just saved."""
        followed = await self._communes(turn)
        topics = [t.name for t in await self._topics_of(turn) if t.id in topic_ids]
        labels = [await self._label(turn, a) for a in followed]
        turn.say(
            texts.SUMMARY.format(
                areas="; ".join(labels),
                role=texts.ROLE_NAMES[turn.subscriber.role],
                topics=", ".join(topics),
            )
        )

    # --- settings, stop, resume, erase ----------------------------------------------------

    async def _settings_menu(self, turn: _Turn) -> None:
        if turn.subscriber.consent_at is None:
            await self._start(turn, "")
            return
        turn.dialog = {"step": "settings"}
        turn.say(
            texts.SETTINGS_MENU,
            [
                Option(texts.SETTINGS_COMMUNES, "s:communes"),
                Option(texts.SETTINGS_ROLE, "s:role"),
                Option(texts.SETTINGS_TOPICS, "s:topics"),
                Option(texts.SETTINGS_LANGUAGE, "s:lang"),
                Option(texts.SETTINGS_CLOSE, "done"),
            ],
            columns=2,
        )

    async def _settings_choice(self, turn: _Turn, value: str) -> None:
        if value == "menu":
            await self._settings_menu(turn)
        elif value == "communes":
            followed = await self._communes(turn)
            options = [Option("❌ " + a.name, f"rm:{a.code}") for a in followed]
            options.append(Option(texts.ADD_COMMUNE, "s:add"))
            text = (
                texts.COMMUNES_MENU.format(areas=self._names(followed))
                if followed
                else texts.NO_COMMUNES
            )
            turn.dialog = {"step": "settings"}
            turn.say(text, options)
        elif value in {"add", "province"}:
            mode = turn.dialog.get("mode") or ("settings" if value == "add" else "signup")
            turn.dialog = {"step": "province", "page": 0, "mode": mode}
            await self._ask_province(turn)
        elif value == "role":
            turn.dialog = {"step": "role", "mode": "settings"}
            await self._ask_role(turn)
        elif value == "topics":
            chosen = await subscribers.topic_ids_of(turn.session, turn.subscriber.id)
            turn.dialog = {"step": "topics", "mode": "settings", "topics": sorted(chosen)}
            await self._ask_topics(turn)
        elif value == "lang":
            turn.dialog = {"step": "language"}
            options = [Option(name, f"l:{code}") for code, name in texts.LANGUAGES.items()]
            turn.say(texts.ASK_LANGUAGE, options, columns=2)
        else:
            await self._settings_menu(turn)

    async def _remove_commune(self, turn: _Turn, code: str) -> None:
        area = await self._map.find(turn.session, code)
        if area is None:
            await self._settings_menu(turn)
            return
        await subscribers.unfollow(turn.session, turn.subscriber.id, area.id)
        turn.say(texts.REMOVED_COMMUNE.format(area=area.name))
        await self._settings_choice(turn, "communes")

    async def _confirmed(self, turn: _Turn, action: str) -> None:
        turn.dialog = {}
        if action == "huy":
            await subscribers.stop(turn.session, turn.subscriber, turn.now)
            turn.say(texts.STOPPED)
        elif action == "xoa":
            # The turn runs without autoflush (see _handle): what is pending for the
            # person goes first, so that erase's blanking is the last word.
            await turn.session.flush()
            await subscribers.erase(turn.session, turn.subscriber, turn.now)
            turn.say(texts.ERASED)

    async def _resume(self, turn: _Turn) -> None:
        followed = await self._communes(turn)
        if not followed or turn.subscriber.consent_at is None:
            await self._start(turn, "")
            return
        await subscribers.resume(turn.session, turn.subscriber)
        turn.say(texts.RESUMED.format(areas=self._names(followed)))

    async def _is_subscribed(self, turn: _Turn) -> bool:
        return turn.subscriber.status is SubscriberStatus.active and bool(
            await self._communes(turn)
        )

    # --- SMS: feature phones text words to the brandname --------------------------------

    async def _sms_text(self, turn: _Turn, text: str) -> None:
        """A text by SMS: "DK <commune name or code>" subscribes at once, a number picks
        from the communes DK offered, DA NHAN / HUY / BAT DAU / XOA / TIN act at once (a
        confirmation would cost another SMS each way); a distress call goes to the
        officials; anything else gets the one-SMS help."""
        folded = fold(text).strip(" .!?")
        options = turn.dialog.get("options") or []
        turn.dialog = {}
        keyword = texts.KEYWORDS.get(folded)
        for word in texts.SMS_WORDS_SUBSCRIBE:
            if folded == word or folded.startswith(word + " "):
                await self._sms_subscribe(turn, folded[len(word) :].strip())
                return
        if folded.isdigit() and 1 <= int(folded) <= len(options):
            kind, _, code = str(options[int(folded) - 1]).partition(":")
            if kind == "c":
                await self._sms_subscribe_to(turn, code)
                return
        if keyword == "ack":
            await self._ack_latest(turn)
        elif keyword == "huy":
            if await self._is_subscribed(turn):
                await subscribers.stop(turn.session, turn.subscriber, turn.now)
                turn.say(texts.SMS_STOPPED)
            else:
                turn.say(texts.SMS_NOT_SUBSCRIBED)
        elif keyword == "batdau":
            followed = await self._communes(turn)
            if followed and turn.subscriber.consent_at is not None:
                await subscribers.resume(turn.session, turn.subscriber)
                turn.say(texts.SMS_RESUMED.format(areas=self._names(followed)))
            else:
                turn.say(texts.SMS_NOT_SUBSCRIBED)
        elif keyword == "xoa":
            await turn.session.flush()  # see _confirmed
            await subscribers.erase(turn.session, turn.subscriber, turn.now)
            turn.say(texts.SMS_ERASED)
        elif keyword == "tin":
            await self._sms_latest(turn)
        elif inbox.is_urgent(text):  # a distress call always reaches the officials
            await self._to_inbox(turn, text, cut=False)
        else:
            turn.say(texts.SMS_HELP)

    async def _sms_subscribe(self, turn: _Turn, query: str) -> None:
        if not query:
            turn.say(texts.SMS_NEED_COMMUNE)
            return
        area = await self._map.find(turn.session, query)
        if area is not None and area.kind is AreaKind.commune:
            await self._sms_subscribe_to(turn, area.code)
            return
        matches = await areas.search(turn.session, query, kinds=(AreaKind.commune,), limit=8)
        # "binh chau" names Xã Bình Châu exactly: a fuzzy neighbour is no rival to it.
        exact = [m for m in matches if fold(m.area.name).endswith(fold(query))]
        matches = exact or matches
        if len(matches) == 1:
            await self._sms_subscribe_to(turn, matches[0].area.code)
        elif matches:
            options = [Option(m.label, f"c:{m.area.code}") for m in matches[:SMS_CHOICES]]
            turn.say(texts.SMS_PICK_COMMUNE, options)
        else:
            turn.say(texts.SMS_NO_COMMUNE.format(text=query[:30]))

    async def _sms_subscribe_to(self, turn: _Turn, code: str) -> None:
        """Texting DK is the consent: follow the commune with every topic at once."""
        commune = await self._map.find(turn.session, code)
        if commune is None:
            turn.say(texts.SMS_NO_COMMUNE.format(text=code[:30]))
            return
        if turn.subscriber.consent_at is None:
            turn.subscriber.role = SubscriberRole.fisherman
        await subscribers.record_consent(turn.session, turn.subscriber, turn.now, None)
        chose = not turn.is_new and bool(
            await subscribers.topic_ids_of(turn.session, turn.subscriber.id)
        )
        await self._follow(turn, commune.id)
        if not chose:
            await subscribers.follow_all_topics(turn.session, turn.subscriber.id)
        province = (
            await self._map.get(turn.session, commune.province_id) if commune.province_id else None
        )
        turn.say(
            texts.SMS_SUBSCRIBED.format(commune=commune.name, province=self._area_name(province))
        )

    async def _sms_latest(self, turn: _Turn) -> None:
        """TIN: the newest bulletin for the person's communes, in brief."""
        if not await self._communes(turn):
            turn.say(texts.SMS_NOT_SUBSCRIBED)
            return
        found = await subscribers.latest_bulletins(turn.session, turn.subscriber.id, limit=1)
        if not found:
            turn.say(texts.SMS_NO_BULLETINS)
            return
        bulletin = found[0]
        local = bulletin.updated_at.astimezone(dt.timezone(dt.timedelta(hours=7)))
        turn.say(
            texts.SMS_LATEST.format(
                date=local.strftime("%d/%m"),
                title=bulletin.title.rstrip(" ."),
                body=_short(bulletin.body, SMS_BRIEF),
            )
        )

    # --- the phone for urgent bulletins by ZNS or SMS (/sdt) -----------------------------

    async def _phone(self, turn: _Turn, argument: str) -> None:
        """/sdt: show the kept number (masked) or ask for one; "/sdt xoa" removes it;
        "/sdt 0912345678" goes straight to the consent question."""
        if fold(argument) in {"xoa", "bo"}:
            removed = await subscribers.remove_phone(turn.session, turn.subscriber)
            turn.say(texts.PHONE_REMOVED if removed else texts.PHONE_NONE)
            return
        if turn.subscriber.consent_at is None:
            turn.say(texts.PHONE_NEED_SIGNUP)
            return
        if argument:
            await self._typed_phone(turn, argument)
        elif turn.subscriber.phone is not None:
            turn.say(texts.PHONE_KEPT.format(phone=sms.mask(turn.subscriber.phone)))
        else:
            turn.dialog = {"step": "phone"}
            turn.say(texts.PHONE_ASK)

    async def _typed_phone(self, turn: _Turn, text: str) -> None:
        if fold(text) in texts.PHONE_NO_WORDS:
            turn.dialog = {}
            turn.say(texts.PHONE_DECLINED)
            return
        try:
            phone = sms.msisdn(text)
        except ValueError:
            turn.dialog = {"step": "phone"}
            turn.say(texts.PHONE_INVALID)
            return
        # Kept in the dialog only until the answer (see _handle), never in the person's row.
        turn.dialog = {"step": "phone_consent", "phone": phone}
        turn.say(
            texts.PHONE_CONSENT.format(phone=vessels.display_phone("0" + phone[2:])),
            [Option(texts.PHONE_YES, "phone:yes"), Option(texts.PHONE_NO, "phone:no")],
            columns=2,
        )

    async def _phone_consent(self, turn: _Turn, agreed: bool) -> None:
        pending = turn.dialog.get("phone") if turn.dialog.get("step") == "phone_consent" else None
        turn.dialog = {}
        if not agreed or not isinstance(pending, str):  # a refusal, or a stale button
            turn.say(texts.PHONE_DECLINED)
            return
        phone = await subscribers.set_phone(turn.session, turn.subscriber, pending, turn.now)
        turn.say(texts.PHONE_SAVED.format(phone=sms.mask(phone)))

    # --- bulletins, acknowledgements, inbox ---------------------------------------------

    async def _latest(self, turn: _Turn) -> None:
        followed = await self._communes(turn)
        if not followed:
            turn.say(texts.NOT_SUBSCRIBED)
            return
        found = await subscribers.latest_bulletins(turn.session, turn.subscriber.id)
        if not found:
            turn.say(texts.NO_BULLETINS)
            return
        lines = [texts.LATEST_HEADER.format(areas=self._names(followed))]
        for bulletin in found:
            marker = (
                texts.URGENT_MARK if bulletin.priority is Priority.urgent else texts.ROUTINE_MARK
            )
            local = bulletin.updated_at.astimezone(dt.timezone(dt.timedelta(hours=7)))
            lines.append(
                texts.LATEST_ITEM.format(
                    marker=marker, title=bulletin.title, date=local.strftime("%d/%m/%Y")
                )
            )
        turn.say("\n".join(lines))

    async def _ack(self, turn: _Turn, bulletin_id: int) -> None:
        outcome = await subscribers.acknowledge(
            turn.session, bulletin_id=bulletin_id, subscriber=turn.subscriber, now=turn.now,
            bot_id=turn.address.bot_id,
        )  # fmt: skip
        message = {True: texts.ACK_THANKS, False: texts.ACK_ALREADY, None: texts.ACK_UNKNOWN}
        # A toast, which Telegram does not count against the bot's limits, and the button
        # stays: after a storm warning thousands press it at once, and removing each
        # button would cost the bot a slot the warning needs for someone not yet warned.
        turn.say(message[outcome], notice=True, keep_buttons=True)

    async def _ack_latest(self, turn: _Turn) -> None:
        """ "đã nhận" typed (Zalo has no buttons): acknowledge the newest urgent bulletin."""
        found = await subscribers.latest_bulletins(turn.session, turn.subscriber.id, limit=10)
        urgent: Bulletin | None = next((b for b in found if b.priority is Priority.urgent), None)
        if urgent is None:
            turn.say(texts.ACK_NOTHING)
            return
        await self._ack(turn, urgent.id)

    async def _to_inbox(self, turn: _Turn, text: str, cut: bool) -> None:
        if not text:
            turn.say(texts.HELP)
            return
        area = await self._home_area(turn)
        message = await inbox.save(
            turn.session, now=turn.now, subscriber_id=turn.subscriber.id,
            chat_address_id=turn.address.id, area_id=area.id if area else None,
            kind=InboxKind.text, text=text,
        )  # fmt: skip
        if area is None:
            reply = texts.INBOX_NO_AREA
        elif message.urgent:
            reply = texts.INBOX_FORWARDED_URGENT.format(area=area.name)
        else:
            reply = texts.INBOX_FORWARDED.format(area=area.name)
        if cut:
            reply += "\n" + texts.TOO_LONG_NOTE.format(limit=MAX_INPUT)
        turn.say(reply)

    # --- the documents library ----------------------------------------------------------

    @staticmethod
    def _search_words(text: str) -> str | None:
        """What to look for after "tra cứu …" typed as words; None if the text is not that."""
        words = text.split()
        for prefix in texts.SEARCH_WORDS:
            size = len(prefix.split())
            if fold(" ".join(words[:size])) == prefix:
                return " ".join(words[size:])
        return None

    async def _search(self, turn: _Turn, query: str, *, question: str | None = None) -> bool:
        """Answer with the best documents and their read/listen buttons.

        `question`: the free-text message this search was guessed from; it gets a button
        to send it to the officials instead, and no hits means False (the caller then
        forwards it), so a guess never swallows a message.
        """
        # Public documents only: anyone can write to the bot and claim any role, so
        # internal guidance (for border guard stations, say) stays off chat.
        hits = await library.search(turn.session, query, limit=SEARCH_RESULTS, public=True)
        language = turn.subscriber.language or "vi"
        if language != "vi":  # documents in the person's own language first, when there are
            own = await library.search(
                turn.session, query, language=language, limit=SEARCH_RESULTS, public=True
            )
            shown = {hit.document_id for hit in own}
            hits = [*own, *(hit for hit in hits if hit.document_id not in shown)]
            hits = hits[:SEARCH_RESULTS]
        if not hits:
            if question is not None:
                return False
            turn.say(
                texts.SEARCH_NOTHING.format(query=_short(query, 60)),
                [Option(texts.BROWSE_TOPICS, "tp")],
            )
            return True
        lines = [texts.SEARCH_RESULTS.format(query=_short(query, 80))]
        options: list[Option] = []
        for hit in hits:
            number = texts.SEARCH_ITEM_NUMBER.format(number=hit.number) if hit.number else ""
            lines.append(
                texts.SEARCH_ITEM.format(
                    title=_short(hit.title, 160), number=number, snippet=hit.snippet
                )
            )
            ref = hit.number or _short(hit.title, 28)
            options.append(Option(texts.READ.format(ref=ref), f"rd:{hit.document_id}:0"))
            options.append(Option(texts.LISTEN.format(ref=ref), f"ls:{hit.document_id}"))
        if question is not None:
            lines.append(texts.SEARCH_ASK_HINT)
            options.append(Option(texts.ASK_OFFICIALS, "ask"))
            turn.dialog = {"question": question}
        turn.say("\n\n".join(lines), options, columns=2)
        return True

    async def _topics(self, turn: _Turn, *, replace: bool = False) -> None:
        counts = [(t, n) for t, n in await documents.public_topics(turn.session) if n]
        if not counts:
            turn.say(texts.LIBRARY_EMPTY)
            return
        options = [
            Option(texts.TOPIC_ITEM.format(name=topic.name, count=n), f"tp:{topic.slug}:0")
            for topic, n in counts
        ]
        turn.say(texts.TOPICS_HEADER, options, replace=replace)

    async def _topic(self, turn: _Turn, slug: str, page: int) -> None:
        counts = {t.slug: (t, n) for t, n in await documents.public_topics(turn.session)}
        topic, total = counts.get(slug, (None, 0))
        if topic is None or not total:
            await self._topics(turn, replace=True)
            return
        pages = -(-total // TOPIC_PAGE)
        page = max(0, min(page, pages - 1))
        found, _total = await documents.public_documents(
            turn.session, topic_id=topic.id, limit=TOPIC_PAGE, offset=page * TOPIC_PAGE
        )
        lines = [texts.TOPIC_DOCUMENTS.format(topic=topic.name, page=page + 1, pages=pages)]
        options = []
        for document in found:
            number = texts.SEARCH_ITEM_NUMBER.format(number=document.number)
            date = texts.TOPIC_DOCUMENT_DATE.format(date=document.issued_on)
            lines.append(
                texts.TOPIC_DOCUMENT_ITEM.format(
                    title=_short(document.title, 160),
                    number=number if document.number else "",
                    date=date if document.issued_on else "",
                )
            )
            ref = document.number or _short(document.title, 28)
            options.append(Option(texts.READ.format(ref=ref), f"rd:{document.id}:0"))
        if page > 0:
            options.append(Option(texts.PREVIOUS, f"tp:{slug}:{page - 1}"))
        if page < pages - 1:
            options.append(Option(texts.NEXT, f"tp:{slug}:{page + 1}"))
        options.append(Option(texts.OTHER_TOPICS, "tp"))
        turn.say("\n".join(lines), options, replace=True)

    async def _read(
        self, turn: _Turn, document_id: int, page: int, *, turning: bool = False
    ) -> None:
        """One page of the document, cut under the platform's limit at paragraph or
        sentence ends, with buttons to turn pages and to listen.

        `turning`: a page turned from the page before replaces it (Telegram edits the
        message); a document opened from a list comes as a new message and leaves the
        list usable.
        """
        document = await turn.session.get(Document, document_id)
        if document is None or not document.public:
            turn.say(texts.DOCUMENT_GONE)
            return
        pages = library.page(library.reading_text(document), turn.text_limit - READ_RESERVE)
        page = max(0, min(page, len(pages) - 1))
        parts = [texts.READ_PAGE.format(page=page + 1, pages=len(pages)), pages[page]]
        if len(pages) > 1:
            parts.append(texts.READ_TURN_HINT)
        options = []
        if page > 0:
            options.append(Option(texts.PREVIOUS, f"rp:{document.id}:{page - 1}"))
        if page < len(pages) - 1:
            options.append(Option(texts.NEXT, f"rp:{document.id}:{page + 1}"))
        options.append(Option(texts.LISTEN_THIS, f"ls:{document.id}"))
        turn.dialog = {"step": "read", "document": document.id, "page": page}
        turn.say("\n\n".join(parts), options, columns=2, replace=turning, keep_buttons=not turning)

    async def _turn_page(self, turn: _Turn, step: int) -> None:
        """ "tiếp" / "trước" typed while reading (Zalo has no buttons)."""
        document_id = int(turn.dialog.get("document", 0))
        page = int(turn.dialog.get("page", 0)) + step
        await self._read(turn, document_id, page, turning=True)

    async def _listen(self, turn: _Turn, document_id: int) -> None:
        document = await turn.session.get(Document, document_id)
        if document is None or not document.public:
            turn.say(texts.DOCUMENT_GONE)
        elif self.voices is None:
            turn.say(texts.LISTEN_OFF)
        elif turn.voice_by_url and self.voices.public_base_url is None:
            turn.say(texts.LISTEN_NO_LINK)  # no address the platform could fetch it from
        else:
            # Answer at once; the adapter renders (or reuses) the voice and sends it later.
            turn.say(
                texts.LISTEN_PREPARING.format(title=_short(document.title, 120)),
                keep_buttons=True,
                audio_document=document.id,
            )

    # --- helpers ------------------------------------------------------------------------

    async def _home_area(self, turn: _Turn) -> Area | None:
        followed = await self._communes(turn)
        return followed[0] if followed else None

    async def _follow(self, turn: _Turn, area_id: int) -> bool:
        turn.is_new = False  # follows something now: _communes must read it
        return await subscribers.follow(turn.session, turn.subscriber.id, area_id)

    async def _communes(self, turn: _Turn) -> list[Area]:
        """The areas the person follows (none for a person this turn created)."""
        if turn.is_new:
            return []
        return await subscribers.communes_of(turn.session, turn.subscriber.id)

    async def _topics_of(self, turn: _Turn) -> list[Topic]:
        """The active topics, read once in a turn that lists them twice."""
        if turn.topics is None:
            turn.topics = await subscribers.active_topics(turn.session)
        return turn.topics

    async def _label(self, turn: _Turn, area: Area | Place) -> str:
        province = await self._map.get(turn.session, area.province_id) if area.province_id else None
        return f"{area.name} ({province.name})" if province else area.name

    @staticmethod
    def _area_name(area: Area | Place | None) -> str:
        return area.name if area is not None else "xã"

    @staticmethod
    def _names(followed: list[Area]) -> str:
        return ", ".join(a.name for a in followed)

    @staticmethod
    def _yes_no() -> list[Option]:
        return [Option(texts.YES, "yes"), Option(texts.NO, "no")]


def _answers_phone(event: Inbound) -> bool:
    """Whether the event answers the consent question for a phone ("1"/"2" on Zalo)."""
    if event.kind is EventKind.button:
        return event.data.startswith("phone:")
    if event.kind is not EventKind.text:
        return False
    text = event.text.strip()
    folded = fold(text).strip(" .!?")
    return text.isdigit() or folded in texts.PHONE_YES_WORDS | texts.PHONE_NO_WORDS


def _short(text: str, limit: int) -> str:
    """`text` cut at a word end to at most `limit` characters, "…" marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"
