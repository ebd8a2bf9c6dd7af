-- This slice's transactional outbox (libs/event_outbox.py; the table's shape: libs/migrations/0002).
SELECT create_event_outbox('drafter');
