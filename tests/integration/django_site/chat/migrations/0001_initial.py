from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []  # noqa: RUF012 (Django's migration format)
    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Message",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(max_length=10)),
                ("user", models.CharField(max_length=150)),
                ("text", models.TextField()),
            ],
        ),
    ]
