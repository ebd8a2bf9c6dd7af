"""Short public-post style texts (tweet-like) for the sentiment model only.

Lead SMS are not the only text whose mood matters: people write to a business
the way they post, with @mentions, hashtags, links, emoji, sarcasm and
insults. These hand-written templates carry a sentiment and no intent (they
train and test sentiment only, never intent). They split into training and
test side by the same stable template hash as the lead templates.
"""

from __future__ import annotations

import random
import re

from services.router.corpus.generate import Side, noise, on_side

TWEET_SLOTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "user": ["@united", "@comcast", "@AmazonHelp", "@jenny_b", "@mike88", "@Verizon",
                 "@ChaseSupport", "@uber"],
        "brand": ["comcast", "the airline", "my bank", "uber", "this app", "the cable company", "walmart",
                  "the new iphone", "my landlord", "the dmv", "netflix", "starbucks"],
        "thing": ["the game", "this song", "the new season", "my flight", "the concert", "the update",
                  "my order", "the movie", "the weather", "my commute", "the wifi", "lunch"],
        "day": ["today", "tonight", "this morning", "all week", "on a monday", "again", "yesterday"],
        "tag": ["#fail", "#mondays", "#blessed", "#neveragain", "#customerservice", "#love", "#news",
                "#tbt", ""],
        "url": ["http://t.co/xY12ab", "https://t.co/9kLmN", "bit.ly/2abc"],
        "n": ["2", "3", "45", "two", "five"],
    },
    "es": {
        "user": ["@Movistar_es", "@TelcelSoporte", "@Iberia", "@BBVA_Mex", "@juanitaa", "@pepe_ok",
                 "@Claro_Col", "@Mercadolibre", "@Renfe"],
        "brand": ["Movistar", "Telcel", "el banco", "Iberia", "la compañía de luz", "Renfe", "esta app",
                  "Mercado Libre", "el casero", "Claro", "la aerolínea", "el gobierno"],
        "thing": ["el partido", "esta canción", "la nueva temporada", "mi vuelo", "el concierto",
                  "la actualización", "mi pedido", "la peli", "el clima", "el tráfico", "el internet",
                  "la comida"],
        "day": ["hoy", "esta noche", "esta mañana", "toda la semana", "un lunes", "otra vez", "ayer"],
        "tag": ["#fail", "#lunes", "#feliz", "#nuncamás", "#atencionalcliente", "#amor", "#noticias",
                "#Madrid", ""],
        "url": ["http://t.co/xY12ab", "https://t.co/9kLmN", "bit.ly/2abc"],
        "n": ["2", "3", "45", "dos", "cinco"],
    },
}  # fmt: skip

TWEETS: dict[str, dict[str, list[str]]] = {
    "NEGATIVE": {
        "en": [
            "{user} worst customer service ever, {n} hours on hold {tag}",
            "{brand} is a scam, never again",
            "can't believe {brand} charged me twice. unreal 😡",
            "{thing} was a total disaster {day}",
            "I hate {day} so much",
            "thanks for nothing {user} 🙄",
            "oh great, {thing} is delayed {day}. just perfect. 🙃",
            "{brand} you suck {tag}",
            "so tired of this crap",
            "my {thing} got cancelled {day} and nobody tells us anything",
            "disgusting how {brand} treats people",
            "absolutely furious right now 🤬",
            "this is pathetic {user}",
            "{thing} ruined my day 👎",
            "ugh {thing} {day}... kill me",
            "worst {thing} I've ever seen, what a waste of money",
            "shame on you {brand}",
            "feeling like garbage {day} 😞",
            "nobody at {brand} knows what they're doing",
            "{n} weeks and still no refund from {brand}. thieves",
            "so sad about the news {day} 💔",
            "I'm done with {brand}, cancelling everything",
            "wow, another outage. love paying for nothing {user}",
            "this {thing} is trash lol",
            "sick and tired of being lied to",
            "my phone died, missed my bus and it's raining. awesome day",
            "{user} still waiting for someone to call me back. useless",
            "RT {user}: {thing} is broken again {url}",
            "seriously?? how hard is it to get this right",
            "why does {brand} keep doing this to me",
            "lost my keys again ffs",
            "can't sleep, everything hurts",
        ],
        "es": [
            "{user} el peor servicio al cliente, {n} horas esperando {tag}",
            "{brand} es una estafa, nunca más",
            "no puedo creer que {brand} me cobró dos veces 😡",
            "{thing} fue un desastre {day}",
            "odio los lunes",
            "gracias por nada {user} 🙄",
            "qué bien, {thing} retrasado {day}. genial. 🙃",
            "pésimo servicio de {brand} {tag}",
            "estoy harta de esta mierda",
            "me cancelaron {thing} {day} y nadie dice nada",
            "una vergüenza cómo trata {brand} a la gente",
            "estoy que exploto 🤬",
            "qué patético {user}",
            "{thing} me arruinó el día 👎",
            "uff {thing} {day}... no puedo más",
            "la peor {thing} que he visto, qué manera de tirar el dinero",
            "qué vergüenza {brand}",
            "me siento fatal {day} 😞",
            "en {brand} nadie sabe hacer su trabajo",
            "{n} semanas y {brand} sigue sin devolverme el dinero. ladrones",
            "qué tristeza la noticia de {day} 💔",
            "me cansé de {brand}, doy de baja todo",
            "otra vez sin internet. me encanta pagar por nada {user}",
            "{thing} es una basura jaja",
            "harto de que me mientan",
            "se me murió el celu, perdí el bus y llueve. día perfecto",
            "{user} sigo esperando que me llamen. inútiles",
            "RT {user}: {thing} se volvió a caer {url}",
            "en serio?? tan difícil es hacerlo bien",
            "xq {brand} me hace esto siempre",
            "otra vez perdí las llaves, q rabia",
            "no puedo dormir, me duele todo",
            "q asco de servicio {user}",
            "x culpa de {brand} llegué tarde {day}, gracias eh",
            "ya no aguanto a {brand}, son unos sinvergüenzas",
            "que mal día, todo me sale mal",
            "me tienen hasta la madre con {thing}",
            "vaya mierda de {thing}",
            "estoy re caliente con {brand}, me re cagaron",
            "lamentable lo de {thing}, da pena",
            "nadie contesta en {brand}, vergonzoso",
            "ojalá quiebre {brand} 👎👎",
            "deprimida {day} 😭",
        ],
    },
    "POSITIVE": {
        "en": [
            "{user} thanks for the quick help, you guys rock!",
            "loving {thing} {day} ❤️",
            "best {thing} ever {tag}",
            "so happy right now 😊",
            "{brand} fixed it in 5 minutes, impressed",
            "what a great day with friends",
            "can't wait for {thing}!!",
            "shoutout to {user} for the amazing service 🙌",
            "{thing} was awesome {day}",
            "feeling blessed {tag}",
            "good morning everyone, have a lovely day ☀️",
            "finally got my {thing}, so excited",
            "this made my day lol 😂",
            "proud of my team {day} 💪",
            "{brand} you're the best",
            "happy birthday {user}!! love you",
            "just had the best coffee of my life",
            "thank you all for the support, means a lot",
            "RT {user}: great news about {thing} {url}",
            "yesss we won!!",
        ],
        "es": [
            "{user} gracias por la ayuda tan rápida, son geniales!",
            "me encanta {thing} {day} ❤️",
            "lo mejor de {day} {tag}",
            "qué feliz estoy 😊",
            "{brand} me lo resolvió en 5 minutos, impresionante",
            "qué buen día con los amigos",
            "ya quiero que llegue {thing}!!",
            "gracias {user} por la excelente atención 🙌",
            "{thing} estuvo increíble {day}",
            "bendecida {tag}",
            "buenos días a todos, que tengan un lindo día ☀️",
            "por fin me llegó {thing}, qué emoción",
            "me alegraste el día jaja 😂",
            "orgullosa de mi equipo {day} 💪",
            "{brand} son los mejores",
            "feliz cumple {user}!! te quiero",
            "el mejor café de mi vida",
            "gracias a todos por el apoyo, significa mucho",
            "RT {user}: buenas noticias sobre {thing} {url}",
            "siii ganamos!!",
            "q lindo {thing} 😍",
            "re copado el servicio de {brand}",
            "muy contenta con {thing}, recomendadísimo",
            "qué chido estuvo {thing}",
            "vamos que se puede! 💪",
        ],
    },
    "NEUTRAL": {
        "en": [
            "{thing} starts at 8 {day}",
            "anyone know if {brand} is open {day}?",
            "heading to the store, need anything?",
            "{brand} announces new prices for {thing} {url}",
            "RT {user}: {thing} schedule for {day} {url}",
            "watching {thing} {day}",
            "traffic on the 405 {day}",
            "what time is {thing}?",
            "new post on the blog {url}",
            "{user} is there a number I can call?",
            "{n} days until {thing}",
            "reading about {thing} {tag}",
            "at the airport, flight boards at 6",
            "does anyone have a charger",
            "meeting moved to 3pm",
            "{brand} will close early {day} for the holiday",
            "just landed",
            "live now: {thing} {url}",
        ],
        "es": [
            "{thing} empieza a las 8 {day}",
            "alguien sabe si {brand} abre {day}?",
            "voy al súper, necesitan algo?",
            "{brand} anuncia nuevos precios para {thing} {url}",
            "RT {user}: horario de {thing} para {day} {url}",
            "viendo {thing} {day}",
            "tráfico en la autopista {day}",
            "a qué hora es {thing}?",
            "nueva entrada en el blog {url}",
            "{user} hay algún número al que pueda llamar?",
            "faltan {n} días para {thing}",
            "leyendo sobre {thing} {tag}",
            "en el aeropuerto, embarcamos a las 6",
            "alguien tiene un cargador",
            "la reunión se movió a las 3",
            "{brand} cerrará temprano {day} por el feriado",
            "acabo de aterrizar",
            "en vivo: {thing} {url}",
            "mañana hay paro de transporte en {tag}",
            "q hora es alla?",
            "se viene {thing} el jueves",
            "el lunes empiezan las clases",
        ],
    },
}  # fmt: skip


def generate_tweets(side: Side, *, per_class: int, seed: int) -> list[tuple[str, str, str]]:
    """(text, language, sentiment): ``per_class`` per sentiment and language, templates of ``side``."""
    rng = random.Random(seed)
    slot = re.compile(r"\{(\w+)\}")
    out: list[tuple[str, str, str]] = []
    for sentiment in ("NEGATIVE", "NEUTRAL", "POSITIVE"):
        for language in ("en", "es"):
            templates = [t for t in TWEETS[sentiment][language] if on_side(t, side)]
            slots = TWEET_SLOTS[language]

            def fill(m: re.Match[str], slots: dict[str, list[str]] = slots) -> str:
                return rng.choice(slots[m.group(1)])

            for _ in range(per_class):
                text = slot.sub(fill, rng.choice(templates))
                out.append((noise(" ".join(text.split()), language, rng), language, sentiment))
    return out
