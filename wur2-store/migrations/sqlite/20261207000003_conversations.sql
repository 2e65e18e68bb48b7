-- `/history @user` reads the private messages between two users, both ways, newest
-- first: by recipient and sender (as its key: names are ASCII and match without regard
-- to case), then store order.
CREATE INDEX messages_conversation ON messages (recipient_key, LOWER(sender), seq)
    WHERE recipient_key IS NOT NULL;
