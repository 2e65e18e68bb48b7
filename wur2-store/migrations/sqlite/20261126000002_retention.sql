-- History retention deletes messages by age; without this index every pass would read the
-- whole table.
CREATE INDEX messages_created_at ON messages (created_at_ms);
